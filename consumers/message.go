package consumers

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Message is one delivery handed to a group's handler, decoded.
type Message struct {
	// Event is the webhook event; for messages from the enriched stream it is
	// Enriched.Event.
	Event *spectorav1.WebhookEvent
	// Enriched is set for messages from the enriched stream.
	Enriched *spectorav1.EnrichedEvent
	// Subject is the subject the event was first published on; for a
	// redriven dead letter, the original one.
	Subject string
	// Stream and Sequence locate this delivery's message.
	Stream   string
	Sequence uint64
	// Delivered counts deliveries to this group, from 1.
	Delivered uint64
	// Group is the handling group's name.
	Group string
	// Header holds the NATS headers (case-sensitive keys, see package stream).
	Header nats.Header

	raw       jetstream.Msg
	decodeErr error
	// settleCtx is the context the runtime settles in (dead-lettering, logs);
	// the Tracing middleware puts its span there.
	settleCtx context.Context
	settled   []func(Outcome)
}

// newMessage decodes a delivery. A message that doesn't decode is still
// returned, with decodeErr set: the runtime dead-letters it.
func newMessage(ctx context.Context, group string, jm jetstream.Msg) *Message {
	m := &Message{Subject: stream.OriginalSubject(jm.Subject(), jm.Headers()), Group: group, Header: jm.Headers(), raw: jm, settleCtx: ctx}
	md, err := jm.Metadata()
	if err != nil {
		m.decodeErr = fmt.Errorf("%w: metadata: %v", stream.ErrUndecodable, err)
		return m
	}
	m.Stream, m.Sequence, m.Delivered = md.Stream, md.Sequence.Stream, md.NumDelivered
	ev, err := stream.Decode(jm.Headers(), jm.Data())
	if err != nil {
		m.decodeErr = err
		return m
	}
	m.Event, m.Enriched = ev.Webhook, ev.Enriched
	return m
}

// OnSettled registers f to run once the runtime has settled the delivery
// (acked, naked, dead-lettered or handed back), with what it did. Callbacks
// run in reverse order of registration, like deferred calls; middlewares use
// them to record outcomes and end spans.
func (m *Message) OnSettled(f func(Outcome)) { m.settled = append(m.settled, f) }

func (m *Message) runSettled(o Outcome) {
	for i := len(m.settled) - 1; i >= 0; i-- {
		m.settled[i](o)
	}
}

// Route is the event's resource and action, from its original subject
// (stream.Unrouted if that is not a subject of the subject map).
func (m *Message) Route() stream.Route {
	s, err := stream.ParseSubject(m.Subject)
	if err != nil || s.Route == (stream.Route{}) {
		return stream.Unrouted
	}
	return s.Route
}
