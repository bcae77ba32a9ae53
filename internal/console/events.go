package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/spectora-stream/spectora-stream/admin"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/internal/eventindex"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/stream"
)

// The events page shows pageSize events, newest first. Without a record ID
// it reads the raw stream backwards (the newest window, then the rest of
// the limit) and stops after scanLimit events per page, so a busy page
// costs the server a bounded read however large the stream is; "Older"
// goes on from there.
const (
	pageSize  = 50
	window    = 500
	scanLimit = 5000
)

// eventFilter is the events page's query.
type eventFilter struct {
	Type, Resource, Action, Source, SvixID, Record string
	SinceText, UntilText                           string
	Since, Until                                   time.Time
	Before                                         uint64
}

func parseFilter(q url.Values, now time.Time) (eventFilter, error) {
	f := eventFilter{
		Type: strings.TrimSpace(q.Get("type")), Resource: strings.TrimSpace(q.Get("resource")), Action: strings.TrimSpace(q.Get("action")),
		Source: strings.TrimSpace(q.Get("source")), SvixID: strings.TrimSpace(q.Get("svix_id")), Record: strings.TrimSpace(q.Get("record")),
		SinceText: strings.TrimSpace(q.Get("since")), UntilText: strings.TrimSpace(q.Get("until")),
	}
	for name, v := range map[string]string{"source": f.Source, "resource": f.Resource, "action": f.Action} {
		if !tokenRe.MatchString(v) {
			return f, fmt.Errorf("%w: %s %q: letters, digits, _ and - only", errBadRequest, name, v)
		}
	}
	var err error
	if f.Since, err = parseTime(f.SinceText, now); err != nil {
		return f, fmt.Errorf("%w: since: %v", errBadRequest, err)
	}
	if f.Until, err = parseTime(f.UntilText, now); err != nil {
		return f, fmt.Errorf("%w: until: %v", errBadRequest, err)
	}
	if b := q.Get("before"); b != "" {
		if f.Before, err = strconv.ParseUint(b, 10, 64); err != nil {
			return f, fmt.Errorf("%w: before %q: want a stream sequence", errBadRequest, b)
		}
	}
	return f, nil
}

// tokenRe is what a source, resource or action filter may hold: one subject
// or key token.
var tokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// traceIDRe is a W3C trace ID: 32 lowercase hex digits.
var traceIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// parseTime reads "2026-11-27T10:00:00Z", "2026-11-27" or a duration ago
// ("90m", "2h").
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-11-27T10:00:00Z), a date, or a duration ago (2h)", s)
}

// row is one event in the list.
type row struct {
	Seq                                       uint64
	Time                                      time.Time
	Subject, Type, Record, Source, ID, Origin string
	// Resource and Action come from the subject it was first published on
	// (a redrive's is in its headers).
	Resource, Action string
}

func (f eventFilter) match(r row) bool {
	return (f.Type == "" || r.Type == f.Type) &&
		(f.Resource == "" || r.Resource == f.Resource) &&
		(f.Action == "" || r.Action == f.Action) &&
		(f.Source == "" || r.Source == f.Source) &&
		(f.SvixID == "" || r.ID == f.SvixID) &&
		(f.Record == "" || r.Record == f.Record) &&
		(f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until))
}

func rowFrom(seq uint64, subject string, at time.Time, h nats.Header) row {
	r := row{Seq: seq, Time: at.UTC(), Subject: subject, Type: h.Get(stream.HeaderEventType), Record: h.Get(stream.HeaderRecordID),
		Source: cmpOr(h.Get(stream.HeaderSource), "default"), ID: h.Get(stream.HeaderMsgID), Origin: h.Get(stream.HeaderOrigin)}
	if dl := h.Get(stream.HeaderRedrivenFrom); dl != "" {
		r.Origin = "redrive of dead letter " + dl
	}
	r.Resource, r.Action = routeOf(stream.OriginalSubject(subject, h))
	return r
}

func routeOf(subject string) (resource, action string) {
	sub, err := stream.ParseSubject(subject)
	if err != nil {
		return "", ""
	}
	return sub.Route.Resource, sub.Route.Action
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

type eventsData struct {
	Filter  eventFilter
	Rows    []row
	Scanned int
	Older   template.URL // the next page, "" at the end
	Notice  string
	Refresh bool
}

func (c *Console) events(w http.ResponseWriter, r *request) error {
	f, err := parseFilter(r.URL.Query(), time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := eventsData{Filter: f, Refresh: r.URL.Query().Get("refresh") == "1"}
	if f.Record != "" {
		err = c.eventsOfRecord(ctx, &d)
	} else {
		err = c.scanEvents(ctx, &d)
	}
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "events", d)
	return nil
}

// eventsOfRecord lists a record's events from the index: one key read.
func (c *Console) eventsOfRecord(ctx context.Context, d *eventsData) error {
	kv, err := c.js.KeyValue(ctx, stream.IndexBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		d.Notice = "Finding events by record ID needs the indexer group: add indexer to CONSUMER_GROUPS (it indexes events stored from then on)."
		return nil
	}
	if err != nil {
		return fmt.Errorf("index bucket %s: %w", stream.IndexBucket, err)
	}
	f := d.Filter
	entries, err := eventindex.Find(ctx, kv, f.Source, f.Resource, f.Record, 0)
	if err != nil {
		return err
	}
	for _, e := range entries {
		r := row{Seq: e.Seq, Time: e.ReceivedAt.UTC(), Subject: e.Subject, Type: e.Type, Record: e.RecordID, Source: e.Source, ID: e.ID, Origin: e.Origin}
		r.Resource, r.Action = routeOf(e.Subject)
		if f.Before > 0 && r.Seq >= f.Before {
			continue
		}
		if d.Scanned++; f.match(r) {
			d.Rows = append(d.Rows, r)
		}
		if len(d.Rows) == pageSize {
			d.Older = f.query(r.Seq)
			break
		}
	}
	if len(entries) == 0 {
		d.Notice = fmt.Sprintf("No events indexed for record %s (of %s, source %s). The index holds events stored since the indexer group started.",
			f.Record, cmpOr(f.Resource, "any resource"), cmpOr(f.Source, "any"))
	}
	return nil
}

// scanEvents reads the raw stream backwards from Before (or its end), a
// window at a time, until a page is full or scanLimit events were read.
func (c *Console) scanEvents(ctx context.Context, d *eventsData) error {
	s, err := c.js.Stream(ctx, stream.Raw)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		d.Notice = "No events yet: the " + stream.Raw + " stream doesn't exist until the gateway first starts."
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.Raw, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.Raw, err)
	}
	f := d.Filter
	first, end := info.State.FirstSeq, info.State.LastSeq
	if f.Before > 0 {
		end = min(end, f.Before-1)
	}
	if !f.Until.IsZero() && f.Before == 0 {
		seq, err := c.admin.SequenceAt(ctx, stream.Raw, f.Until)
		if err != nil {
			return err
		}
		if seq > 0 {
			end = min(end, seq-1)
		}
	}
	if info.State.Msgs == 0 || end < first {
		return nil
	}
	for end >= first && d.Scanned < scanLimit {
		// The newest window first (enough for an unfiltered page), then the
		// rest of the scan limit in one read: one ordered consumer each.
		size := uint64(window)
		if d.Scanned > 0 {
			size = uint64(scanLimit - d.Scanned)
		}
		start := first
		if end+1 > size {
			start = max(first, end+1-size)
		}
		msgs, err := readRange(ctx, s, start, end)
		if err != nil {
			return err
		}
		for _, r := range slices.Backward(msgs) {
			d.Scanned++
			if !f.Since.IsZero() && r.Time.Before(f.Since) {
				return nil // older than asked: the end
			}
			if f.match(r) {
				d.Rows = append(d.Rows, r)
				if len(d.Rows) == pageSize {
					if r.Seq > first {
						d.Older = f.query(r.Seq)
					}
					return nil
				}
			}
		}
		if start == first {
			return nil
		}
		end = start - 1
	}
	d.Older = f.query(end + 1)
	return nil
}

// readRange returns the messages stored from start to end, in order, through
// an ordered consumer (one request per batch, not one per message).
func readRange(ctx context.Context, s jetstream.Stream, start, end uint64) ([]row, error) {
	var out []row
	err := natsx.ReadOrdered(ctx, s, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start, InactiveThreshold: 5 * time.Second,
		HeadersOnly: true, // a row needs headers and metadata only
	}, int(min(end-start+1, window)), func(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
		if md.Sequence.Stream > end {
			return false
		}
		out = append(out, rowFrom(md.Sequence.Stream, m.Subject(), md.Timestamp, m.Headers()))
		return md.Sequence.Stream < end
	})
	if err != nil {
		return nil, fmt.Errorf("read %s from %d: %w", stream.Raw, start, err)
	}
	return out, nil
}

// query is the events page before seq, with the same filter.
func (f eventFilter) query(before uint64) template.URL {
	q := url.Values{}
	// Times go into the link as instants: "2h" must not move as one pages.
	abs := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for k, v := range map[string]string{"type": f.Type, "resource": f.Resource, "action": f.Action, "source": f.Source,
		"svix_id": f.SvixID, "record": f.Record, "since": abs(f.Since), "until": abs(f.Until)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("before", strconv.FormatUint(before, 10))
	return template.URL("/events?" + q.Encode()) //nolint:gosec // built by url.Values: a path of ours and an encoded query
}

// groupState is one group's state for an event, as far as JetStream can
// tell.
type groupState struct {
	Stream, Group, State, Detail string
}

type eventData struct {
	Seq         uint64
	Subject     string
	Time        time.Time
	Headers     [][2]string
	Envelope    string
	Body        string
	DecodeError string
	Record      string
	RecordNote  string
	Groups      []groupState
	DeadLetters []deadLetterRow
	TraceID     string
	TraceURL    string
	EnrichedSeq uint64
}

// pathSeq is the page's {seq}: a message sequence of streamName.
func pathSeq(r *request, what, streamName string) (uint64, error) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%w: %s %q: want a sequence of %s", errBadRequest, what, r.PathValue("seq"), streamName)
	}
	return seq, nil
}

func (c *Console) event(w http.ResponseWriter, r *request) error {
	seq, err := pathSeq(r, "event", stream.Raw)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, stream.Raw)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: stream %s (the gateway hasn't started yet)", admin.ErrNotFound, stream.Raw)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.Raw, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%w: %s holds no event %d (never stored, or removed by its limits)", admin.ErrNotFound, stream.Raw, seq)
	}
	if err != nil {
		return err
	}
	d := eventData{Seq: seq, Subject: m.Subject, Time: m.Time.UTC(), Headers: sortedHeaders(m.Header)}
	ev, err := stream.Decode(m.Header, m.Data)
	if err != nil {
		d.DecodeError = err.Error()
		c.render(w, r, http.StatusOK, "event", d)
		return nil
	}
	wh := ev.Webhook
	shown := proto.CloneOf(wh)
	shown.Body = nil // shown below, as JSON
	env, _ := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(shown)
	d.Envelope = string(env)
	d.Body = indent(wh.GetBody())
	if tp := m.Header.Get(stream.HeaderTraceParent); tp != "" {
		if parts := strings.Split(tp, "-"); len(parts) == 4 && traceIDRe.MatchString(parts[1]) {
			d.TraceID = parts[1]
			if c.cfg.JaegerURL != "" {
				d.TraceURL = c.cfg.JaegerURL + "/trace/" + d.TraceID
			}
		}
	}
	if wh.GetRecordId() != "" {
		c.recordOf(ctx, &d, wh.GetSource(), wh.GetResource(), wh.GetRecordId())
	}
	route := stream.RouteFor(wh.GetType())
	original := stream.OriginalSubject(m.Subject, m.Header) // a redrive's is in its headers
	if sub, err := stream.ParseSubject(original); err == nil && sub.Route.Resource != "" {
		route = sub.Route
	}
	d.EnrichedSeq = c.enrichedSeq(ctx, wh.GetId(), route.EnrichedSubject(), d.Time)
	// Its dead letters: on its route's dead-letter subjects, from when it
	// was stored; a redriven copy that failed again keeps the original's
	// stream and sequence.
	origSeq := seq
	if v := m.Header.Get(stream.HeaderOriginalSequence); v != "" {
		origSeq, _ = strconv.ParseUint(v, 10, 64)
	}
	if dls, err := c.admin.DeadLettersOf(ctx, route.Subject(), d.Time, 1000); err == nil {
		for _, dl := range dls {
			if (dl.OriginalStream == stream.Raw && dl.OriginalSequence == origSeq) ||
				(d.EnrichedSeq > 0 && dl.OriginalStream == stream.Enriched && dl.OriginalSequence == d.EnrichedSeq) {
				d.DeadLetters = append(d.DeadLetters, deadLetterRowFrom(dl))
			}
		}
	}
	d.Groups = c.groupStates(ctx, []groupTarget{
		{stream.Raw, m.Subject, seq, d.Time}, {stream.Enriched, route.EnrichedSubject(), d.EnrichedSeq, d.Time},
	}, d.DeadLetters)
	c.render(w, r, http.StatusOK, "event", d)
	return nil
}

func (c *Console) recordOf(ctx context.Context, d *eventData, source, resource, id string) {
	kv, err := c.js.KeyValue(ctx, stream.RecordBucket)
	if err != nil {
		d.RecordNote = "No record cache (" + stream.RecordBucket + "): the enricher has not run here."
		return
	}
	rec, err := enrich.Cached(ctx, kv, enrich.Key(source, resource, id))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		d.RecordNote = "Not in the record cache (not fetched yet, or expired after CACHE_TTL)."
	case err != nil:
		d.RecordNote = err.Error()
	default:
		d.RecordNote = fmt.Sprintf("%s, fetched %s from %s", stream.RecordStatusName(rec.Status), rec.FetchedAt.UTC().Format(time.RFC3339), rec.Path)
		d.Record = indent(rec.Body)
	}
}

// enrichedSeq finds the enriched copy of the event (same message ID, on its
// enriched subject, stored after it): 0 when there is none yet.
func (c *Console) enrichedSeq(ctx context.Context, id, subject string, after time.Time) uint64 {
	if id == "" {
		return 0
	}
	seq, err := c.admin.SequenceAt(ctx, stream.Enriched, after)
	if err != nil || seq == 0 {
		return 0
	}
	s, err := c.js.Stream(ctx, stream.Enriched)
	if err != nil {
		return 0
	}
	for range 50 { // the enricher publishes in arrival order, soon after
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return 0
		}
		if m.Header.Get(stream.HeaderMsgID) == id {
			return m.Sequence
		}
		seq = m.Sequence + 1
	}
	return 0
}

// groupTarget is the event as one stream holds it: the raw event, or its
// enriched copy (seq 0 when none was found).
type groupTarget struct {
	stream, subject string
	seq             uint64
	stored          time.Time
}

// groupStates says, per group, whether it acknowledged the event: at or
// below its ack floor it did; above what it was delivered it hasn't seen
// it; in between JetStream can't tell (pending, or acked out of order).
// A group whose filter doesn't take the subject, or that starts after the
// event, never gets it.
func (c *Console) groupStates(ctx context.Context, targets []groupTarget, dls []deadLetterRow) []groupState {
	var out []groupState
	for _, tg := range targets {
		s, err := c.js.Stream(ctx, tg.stream)
		if err != nil {
			continue
		}
		for ci := range s.ListConsumers(ctx).Info() {
			if ci.Config.Durable == "" {
				continue // ephemeral: a reader like this page
			}
			g := groupState{Stream: tg.stream, Group: ci.Name}
			cfg := ci.Config
			switch {
			case !takes(cfg, tg.subject):
				g.State, g.Detail = "not subscribed", "its filter doesn't take "+tg.subject
			case tg.seq == 0:
				g.State, g.Detail = "unknown", "no enriched copy of this event found (not enriched yet, or not within 50 messages of its arrival)"
			case cfg.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && cfg.OptStartSeq > tg.seq,
				cfg.DeliverPolicy == jetstream.DeliverByStartTimePolicy && cfg.OptStartTime != nil && cfg.OptStartTime.After(tg.stored):
				g.State, g.Detail = "not subscribed", "the group starts after this event"
			case ci.AckFloor.Stream >= tg.seq:
				g.State, g.Detail = "acknowledged", fmt.Sprintf("at or below its ack floor (%d)", ci.AckFloor.Stream)
			case ci.Delivered.Stream < tg.seq:
				g.State, g.Detail = "pending", fmt.Sprintf("not delivered yet (delivered up to %d)", ci.Delivered.Stream)
			default:
				g.State, g.Detail = "in flight or acknowledged out of order", fmt.Sprintf("between its ack floor (%d) and last delivered (%d)", ci.AckFloor.Stream, ci.Delivered.Stream)
			}
			for _, dl := range dls {
				if dl.Group == ci.Name {
					g.State, g.Detail = "dead-lettered", fmt.Sprintf("dead letter %d: %s", dl.Seq, dl.Reason)
				}
			}
			out = append(out, g)
		}
	}
	return out
}

// takes says whether a consumer's filter takes subject (no filter: all).
func takes(cfg jetstream.ConsumerConfig, subject string) bool {
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append(filters, cfg.FilterSubject)
	}
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if stream.SubjectMatches(f, subject) {
			return true
		}
	}
	return false
}

func sortedHeaders(h nats.Header) [][2]string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out [][2]string
	for _, k := range keys {
		out = append(out, [2]string{k, strings.Join(h[k], ", ")})
	}
	return out
}

// indent formats JSON for reading; anything else is shown as is.
func indent(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}
