package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// Built-in group names.
const (
	// EnricherGroup republishes every raw event with its record to SPECTORA_ENRICHED.
	EnricherGroup = "enricher"
	// AuditGroup appends every enriched event to a JSON-lines file.
	AuditGroup = "audit"
)

// Publisher is the part of jetstream.JetStream the enricher group uses.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// EnrichHandler is the enricher group's handler: fetch the event's record
// (shared cache, one API call per record) and republish the event with it as
// spectora.v1.EnrichedEvent on spectora.enriched.<resource>.<action>. The
// message ID is the source's svix ID, so a redelivery, redrive or replay
// inside the duplicate window doesn't publish the event twice.
func EnrichHandler(enr *Enricher, js Publisher) Handler {
	return func(ctx context.Context, m *Message) error {
		ev := m.Event
		rec, err := enr.Record(ctx, ev)
		if err != nil {
			return err
		}
		out := &spectorav1.EnrichedEvent{
			Event:          ev,
			RecordStatus:   rec.Status,
			Record:         rec.Body,
			RecordPath:     rec.Path,
			SourceSequence: m.Sequence,
		}
		if !rec.FetchedAt.IsZero() {
			out.FetchedAt = timestamppb.New(rec.FetchedAt)
		}
		data, err := proto.Marshal(out)
		if err != nil {
			return Permanent(fmt.Errorf("marshal enriched event: %w", err))
		}
		resource, action := ev.GetResource(), ev.GetAction()
		if resource == "" || action == "" {
			resource, action = lastTwoTokens(m.Subject)
		}
		msg := nats.NewMsg(natsx.EnrichedPrefix + "." + resource + "." + action)
		msg.Data = data
		for _, k := range []string{natsx.HeaderEventType, natsx.HeaderRecordID, natsx.HeaderSource} {
			if v := m.Header.Get(k); v != "" {
				msg.Header.Set(k, v)
			}
		}
		msg.Header.Set(natsx.HeaderContentType, natsx.ContentTypeEnrichedEvent)
		msg.Header.Set(natsx.HeaderRecordStatus, recordStatusName(rec.Status))
		id := ev.GetId()
		if id == "" {
			id = fmt.Sprintf("%s.%d", m.Stream, m.Sequence)
		}
		ctx, span := telemetry.StartPublish(ctx, enr.tracer, enr.tracing.propagator(), msg, semconv.MessagingMessageID(id),
			telemetry.AttrEventType.String(ev.GetType()), telemetry.AttrRecordID.String(ev.GetRecordId()),
			attribute.String("spectora.record.status", recordStatusName(rec.Status)))
		ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(natsx.EnrichedStream))
		if err != nil {
			err = fmt.Errorf("publish %s: %w", msg.Subject, err)
		} else {
			span.SetAttributes(telemetry.AttrStreamSequence.Int64(int64(ack.Sequence)), attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
		}
		telemetry.End(span, err)
		return err
	}
}

// recordStatusName is the short status used in headers and the audit log.
func recordStatusName(s spectorav1.RecordStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RECORD_STATUS_"))
}

// AuditLog appends one JSON line per enriched event to a file, synced before
// the message is acknowledged: the audit group's real, observable work.
type AuditLog struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// OpenAuditLog opens (creating) path for appending.
func OpenAuditLog(path string) (*AuditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("AUDIT_LOG %q: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("AUDIT_LOG %q: %w", path, err)
	}
	return &AuditLog{f: f, path: path}, nil
}

// Close closes the file.
func (a *AuditLog) Close() error { return a.f.Close() }

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time         time.Time       `json:"time"`
	Group        string          `json:"group"`
	Subject      string          `json:"subject"`
	Sequence     uint64          `json:"seq"`
	SourceSeq    uint64          `json:"source_seq"`
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	RecordID     string          `json:"record_id"`
	Source       string          `json:"source"`
	ReceivedAt   time.Time       `json:"received_at"`
	RecordStatus string          `json:"record_status"`
	Record       json.RawMessage `json:"record,omitempty"`
}

// Handler is the audit group's handler.
func (a *AuditLog) Handler() Handler {
	return func(_ context.Context, m *Message) error {
		ev := m.Event
		e := AuditEntry{
			Time: time.Now().UTC(), Group: m.Group, Subject: m.Subject, Sequence: m.Sequence,
			ID: ev.GetId(), Type: ev.GetType(), RecordID: ev.GetRecordId(), Source: ev.GetSource(),
			ReceivedAt: ev.GetReceivedAt().AsTime(), RecordStatus: "not_fetched",
		}
		if m.Enriched != nil {
			e.SourceSeq = m.Enriched.GetSourceSequence()
			e.RecordStatus = recordStatusName(m.Enriched.GetRecordStatus())
			if json.Valid(m.Enriched.GetRecord()) {
				e.Record = m.Enriched.GetRecord()
			}
		}
		line, err := json.Marshal(e)
		if err != nil {
			return Permanent(err)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		// One write per line: with O_APPEND, several processes sharing the
		// file (replicas on one volume) never interleave inside a line.
		if _, err := a.f.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("audit log %s: %w", a.path, err)
		}
		if err := a.f.Sync(); err != nil {
			return fmt.Errorf("audit log %s: sync: %w", a.path, err)
		}
		return nil
	}
}
