package gateway

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
)

// Route is where an event goes: spectora.<Resource>.<Action>.
type Route struct {
	Resource string
	Action   string
}

// Unrouted is the route of a signed body whose event type can't be read. It is
// stored like any other event, never dropped.
var Unrouted = Route{Resource: "unrouted", Action: "unknown"}

// Subject is the NATS subject of the route.
func (r Route) Subject() string {
	return natsx.SubjectPrefix + "." + r.Resource + "." + r.Action
}

// reservedResource are resource tokens the system uses itself: redrive
// subjects (spectora.redrive.<group>) and the other streams' prefixes.
var reservedResource = map[string]bool{natsx.RedriveResource: true, "enriched": true, "dlq": true}

// maxTokenLen bounds one subject token so a hostile type can't make huge subjects.
const maxTokenLen = 64

// RouteFor maps an event type to its route. Types never seen before still get a
// route: "inspection.rescheduled" → spectora.inspection.rescheduled. Tokens are
// lowercased and every character outside [a-z0-9_-] becomes "_", so no type can
// inject wildcards, spaces or extra subject levels. With more than two parts the
// first is the resource and the rest are joined with "_"
// ("inspection.report.published" → inspection.report_published); a single part
// gets the action "unknown"; an empty type is Unrouted.
func RouteFor(eventType string) Route {
	var tokens []string
	for part := range strings.SplitSeq(strings.TrimSpace(eventType), ".") {
		if t := sanitizeToken(part); t != "" {
			tokens = append(tokens, t)
		}
	}
	if len(tokens) > 0 && reservedResource[tokens[0]] {
		// Keep webhooks off subjects the system itself uses.
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
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b = append(b, byte(r))
		default:
			b = append(b, '_')
		}
	}
	return string(b)
}

// Fields says where the event type and record ID sit in a webhook body, as
// dotted paths tried in order ("data.id" is the "id" member of the "data" object).
// Spectora's exact payload shape is not public, hence the configurable lists.
type Fields struct {
	Type []string
	ID   []string
}

// DefaultFields are the paths tried when none are configured.
func DefaultFields() Fields {
	return Fields{
		Type: []string{"type", "event", "event_type"},
		ID:   []string{"id", "data.id", "record_id"},
	}
}

// maxRecordIDLen bounds a record ID read from the body.
const maxRecordIDLen = 256

// Extract reads the event type and record ID from a JSON body. A body that is not
// a JSON object, or has no string at any type path, yields an empty type. The
// record ID may be a JSON string or number (kept exactly, even past 2^53).
//
// Only the objects on the configured paths are decoded; every other value stays
// raw, which keeps the per-webhook cost flat for large payloads.
func (f Fields) Extract(body []byte) (eventType, recordID string) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", ""
	}
	cache := map[string]map[string]json.RawMessage{"": doc}
	for _, p := range f.Type {
		var s string
		if raw := lookup(cache, p); raw != nil && json.Unmarshal(raw, &s) == nil && strings.TrimSpace(s) != "" {
			eventType = s
			break
		}
	}
	for _, p := range f.ID {
		raw := lookup(cache, p)
		if raw == nil {
			continue
		}
		var id string
		if json.Unmarshal(raw, &id) != nil {
			var n json.Number
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if dec.Decode(&n) != nil {
				continue
			}
			id = n.String()
		}
		if id != "" && len(id) <= maxRecordIDLen {
			recordID = id
			break
		}
	}
	return eventType, recordID
}

// lookup follows a dotted path through nested JSON objects, decoding each
// intermediate object once (cache holds them by path prefix).
func lookup(cache map[string]map[string]json.RawMessage, path string) json.RawMessage {
	parent, key := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		parent, key = path[:i], path[i+1:]
	}
	obj, ok := cache[parent]
	if !ok {
		raw := lookup(cache, parent)
		if raw == nil || json.Unmarshal(raw, &obj) != nil {
			obj = nil
		}
		cache[parent] = obj
	}
	return obj[key]
}
