package enrich

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/stream"
)

// GroupName is the built-in enricher group's name.
const GroupName = "enricher"

// Publisher is the part of jetstream.JetStream the enricher group uses.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Handler is the enricher group's handler: fetch the event's record and
// republish the event with it as spectora.v1.EnrichedEvent on
// spectora.enriched.<resource>.<action>. The message ID is the event's own
// (its svix-id), so a redelivery, redrive or replay inside the duplicate
// window doesn't publish the event twice.
func (e *Enricher) Handler(js Publisher) consumers.Handler {
	return func(ctx context.Context, m *consumers.Message) error {
		ev := m.Event
		rec, err := e.Record(ctx, ev)
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
			return consumers.Permanent(fmt.Errorf("marshal enriched event: %w", err))
		}
		route := stream.Route{Resource: ev.GetResource(), Action: ev.GetAction()}
		if route.Resource == "" || route.Action == "" {
			route = m.Route()
		}
		msg := nats.NewMsg(route.EnrichedSubject())
		msg.Data = data
		for _, k := range []string{stream.HeaderEventType, stream.HeaderRecordID, stream.HeaderSource, stream.HeaderOrigin} {
			if v := m.Header.Get(k); v != "" {
				msg.Header.Set(k, v)
			}
		}
		status := stream.RecordStatusName(rec.Status)
		msg.Header.Set(stream.HeaderContentType, stream.ContentTypeEnrichedEvent)
		msg.Header.Set(stream.HeaderRecordStatus, status)
		// The event's own ID (the svix-id), never the message's: a redriven
		// copy carries a redrive ID, and the enriched stream must drop its
		// republish as a duplicate of the first one.
		id := ev.GetId()
		if id == "" {
			id = fmt.Sprintf("%s.%d", m.Stream, m.Sequence)
		}
		return e.publish(ctx, js, msg, id, ev, status)
	}
}

func (e *Enricher) publish(ctx context.Context, js Publisher, msg *nats.Msg, id string, ev *spectorav1.WebhookEvent, status string) (err error) {
	ctx, span := telemetry.StartPublish(ctx, e.tracer, e.cfg.Propagator, msg, semconv.MessagingMessageID(id),
		telemetry.AttrEventType.String(ev.GetType()), telemetry.AttrRecordID.String(ev.GetRecordId()),
		attribute.String("spectora.record.status", status))
	defer func() { telemetry.End(span, err) }()
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(stream.Enriched))
	if err != nil {
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	span.SetAttributes(telemetry.AttrStreamSequence.Int64(int64(ack.Sequence)), attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
	return nil
}
