package stream

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Stream names.
const (
	// Raw holds verified webhooks as the gateway stored them, one message per
	// Svix message ID.
	Raw = "SPECTORA"
	// Enriched holds events with their full record, republished by the
	// enricher group for services in any language.
	Enriched = "SPECTORA_ENRICHED"
	// DLQ holds dead letters: messages a consumer group gave up on.
	DLQ = "SPECTORA_DLQ"

	// RecordBucket is the key-value bucket caching Spectora records for every
	// group and instance.
	RecordBucket = "spectora_records"
	// VersionBucket is the key-value bucket holding, per record, the last
	// version the system saw (the enricher writes it): what the reconciler
	// compares Spectora's lists against.
	VersionBucket = "spectora_versions"
	// ReconcileBucket is the key-value bucket holding the reconciler's
	// checkpoints, one per source and resource.
	ReconcileBucket = "spectora_reconcile"
	// IndexBucket is the key-value bucket listing, per record
	// (<source>.<resource>.<id>), the raw events stored for it; kept by the
	// indexer group.
	IndexBucket = "spectora_index"
)

// Subject filters of the streams.
const (
	// RawSubjects are the raw stream's event subjects: spectora.<resource>.<action>.
	RawSubjects = "spectora.*.*"
	// RawRedriveSubjects are the raw stream's redrive subjects:
	// spectora.redrive.<group>.<dlq-seq>.
	RawRedriveSubjects = "spectora.redrive.*.*"
	// EnrichedSubjects are the enriched stream's event subjects:
	// spectora.enriched.<resource>.<action>.
	EnrichedSubjects = "spectora.enriched.*.*"
	// EnrichedRedriveSubjects are the enriched stream's redrive subjects:
	// spectora.enriched.redrive.<group>.<dlq-seq>.
	EnrichedRedriveSubjects = "spectora.enriched.redrive.*.*"
	// DLQSubjects is the dead-letter stream's filter:
	// spectora.dlq.<group>.<resource>.<action>.
	DLQSubjects = "spectora.dlq.*.*.*"
)

// Subject tokens the system uses itself.
const (
	prefix        = "spectora"
	tokenEnriched = "enriched"
	tokenDLQ      = "dlq"
	tokenRedrive  = "redrive"
)

// Subjects lists a stream's subject filters, as the stream is configured
// with them: its event subjects and, for the raw and enriched streams, their
// redrive subjects.
func Subjects(stream string) []string {
	switch stream {
	case Raw:
		return []string{RawSubjects, RawRedriveSubjects}
	case Enriched:
		return []string{EnrichedSubjects, EnrichedRedriveSubjects}
	case DLQ:
		return []string{DLQSubjects}
	}
	return nil
}

// IDToken is a record ID as one subject or key token: itself when it is
// made of [A-Za-z0-9_-] (at most 200), otherwise "b64_" and its base64url.
func IDToken(id string) string {
	if len(id) > 0 && len(id) <= 200 && strings.IndexFunc(id, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-'
	}) < 0 {
		return id
	}
	return "b64_" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// EventSubjects is the filter of a stream's events, without redrives: what a
// consumer group reads by default.
func EventSubjects(stream string) string {
	if stream == Enriched {
		return EnrichedSubjects
	}
	return RawSubjects
}

// Route is where an event goes: its resource and action, the last two tokens
// of its subject in every stream.
type Route struct {
	Resource string
	Action   string
}

// Unrouted is the route of a signed body whose event type can't be read. It is
// stored like any other event, never dropped.
var Unrouted = Route{Resource: "unrouted", Action: "unknown"}

// Subject is the route's subject in the raw stream: spectora.<resource>.<action>.
func (r Route) Subject() string { return prefix + "." + r.Resource + "." + r.Action }

// EnrichedSubject is the route's subject in the enriched stream:
// spectora.enriched.<resource>.<action>.
func (r Route) EnrichedSubject() string {
	return prefix + "." + tokenEnriched + "." + r.Resource + "." + r.Action
}

// DeadLetterSubject is the subject of group's dead letter of an event on this
// route: spectora.dlq.<group>.<resource>.<action>.
func (r Route) DeadLetterSubject(group string) string {
	return prefix + "." + tokenDLQ + "." + group + "." + r.Resource + "." + r.Action
}

// RedriveSubject is the subject on which the dead letter at dlqSeq comes back
// to group, in the stream the group reads.
func RedriveSubject(stream, group string, dlqSeq uint64) string {
	return redrivePrefix(stream) + group + "." + strconv.FormatUint(dlqSeq, 10)
}

// RedriveFilter matches every redrive subject of group in stream; a consumer
// group adds it to its filters.
func RedriveFilter(stream, group string) string { return redrivePrefix(stream) + group + ".*" }

func redrivePrefix(stream string) string {
	if stream == Enriched {
		return prefix + "." + tokenEnriched + "." + tokenRedrive + "."
	}
	return prefix + "." + tokenRedrive + "."
}

// DeadLetterFilter matches the dead letters of group, or of every group when
// group is empty.
func DeadLetterFilter(group string) string {
	if group == "" {
		return DLQSubjects
	}
	return prefix + "." + tokenDLQ + "." + group + ".*.*"
}

// Subject is a parsed subject of one of the three streams.
type Subject struct {
	// Stream is the stream the subject belongs to: Raw, Enriched or DLQ.
	Stream string
	// Route is the event's resource and action; empty for redrives, whose
	// original subject rides in the HeaderOriginalSubject header.
	Route Route
	// Group is the consumer group of a dead letter or a redrive.
	Group string
	// Redrive is the dead-letter sequence a redrive subject carries; 0 for
	// every other subject.
	Redrive uint64
}

// ParseSubject parses a subject of the subject map; anything else is an error
// wrapping ErrNotOurs.
func ParseSubject(subject string) (Subject, error) {
	t := strings.Split(subject, ".")
	if len(t) < 3 || t[0] != prefix {
		return Subject{}, fmt.Errorf("%w: %q", ErrNotOurs, subject)
	}
	for _, tok := range t {
		if tok == "" || tok == "*" || tok == ">" {
			return Subject{}, fmt.Errorf("%w: %q", ErrNotOurs, subject)
		}
	}
	redrive := func(stream, group, seq string) (Subject, error) {
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil || n == 0 {
			return Subject{}, fmt.Errorf("%w: %q: redrive sequence %q", ErrNotOurs, subject, seq)
		}
		return Subject{Stream: stream, Group: group, Redrive: n}, nil
	}
	switch {
	case len(t) == 3:
		return Subject{Stream: Raw, Route: Route{t[1], t[2]}}, nil
	case len(t) == 4 && t[1] == tokenRedrive:
		return redrive(Raw, t[2], t[3])
	case len(t) == 4 && t[1] == tokenEnriched:
		return Subject{Stream: Enriched, Route: Route{t[2], t[3]}}, nil
	case len(t) == 5 && t[1] == tokenEnriched && t[2] == tokenRedrive:
		return redrive(Enriched, t[3], t[4])
	case len(t) == 5 && t[1] == tokenDLQ:
		return Subject{Stream: DLQ, Group: t[2], Route: Route{t[3], t[4]}}, nil
	}
	return Subject{}, fmt.Errorf("%w: %q", ErrNotOurs, subject)
}

// reservedResource are resource tokens the system uses itself; the gateway
// never routes a webhook to them, so `nats sub 'spectora.enriched.>'` and its
// like show only what their names say.
var reservedResource = map[string]bool{tokenRedrive: true, tokenEnriched: true, tokenDLQ: true}

// maxTokenLen bounds one subject token so a hostile type can't make huge subjects.
const maxTokenLen = 64

// RouteFor maps an event type to its route. Types never seen before still get a
// route: "inspection.rescheduled" → spectora.inspection.rescheduled. Tokens are
// lowercased and every character outside [a-z0-9_-] becomes "_", so no type can
// inject wildcards, spaces or extra subject levels. With more than two parts the
// first is the resource and the rest are joined with "_"
// ("inspection.report.published" → inspection.report_published); a single part
// gets the action "unknown"; an empty type is Unrouted. The resource tokens
// "redrive", "enriched" and "dlq" get a trailing "_".
func RouteFor(eventType string) Route {
	// The common case, "resource.action" already in subject form, needs no
	// copies: the route's tokens are the type's own substrings.
	if res, act, ok := strings.Cut(eventType, "."); ok && cleanToken(res) && cleanToken(act) && !reservedResource[res] {
		return Route{Resource: res, Action: act}
	}
	return routeForGeneral(eventType)
}

// tokenByte reports whether c may stand in a subject token as it is.
func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// cleanToken reports whether s is a token sanitizeToken would keep as is.
func cleanToken(s string) bool {
	if s == "" || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			return false
		}
	}
	return true
}

func routeForGeneral(eventType string) Route {
	var tokens []string
	for part := range strings.SplitSeq(strings.TrimSpace(eventType), ".") {
		if t := sanitizeToken(part); t != "" {
			tokens = append(tokens, t)
		}
	}
	if len(tokens) > 0 && reservedResource[tokens[0]] {
		tokens[0] += "_"
	}
	switch len(tokens) {
	case 0:
		return Unrouted
	case 1:
		return Route{Resource: tokens[0], Action: "unknown"}
	default:
		action := strings.Join(tokens[1:], "_")
		if len(action) > maxTokenLen {
			action = action[:maxTokenLen]
		}
		return Route{Resource: tokens[0], Action: action}
	}
}

// sanitizeToken lowercases s and replaces every byte outside [a-z0-9_-] with "_".
func sanitizeToken(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	b := make([]byte, 0, min(len(s), maxTokenLen))
	for _, r := range strings.ToLower(s) {
		if len(b) == maxTokenLen {
			break
		}
		if r < 0x80 && tokenByte(byte(r)) {
			b = append(b, byte(r))
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}

// SubjectMatches reports whether a NATS subject filter ("*" one token, ">"
// the rest) matches subject.
func SubjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}
