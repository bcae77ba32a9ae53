package consumers

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// Message is one delivery handed to a group's handler, decoded.
type Message struct {
	// Event is the webhook event; for messages from SPECTORA_ENRICHED it is
	// Enriched.Event.
	Event *spectorav1.WebhookEvent
	// Enriched is set for messages from SPECTORA_ENRICHED.
	Enriched *spectorav1.EnrichedEvent
	// Subject is the subject the event was published on; for a redriven dead
	// letter, the original one.
	Subject string
	// Stream and Sequence locate this delivery's message.
	Stream   string
	Sequence uint64
	// Delivered counts deliveries to this group, from 1.
	Delivered uint64
	// Group is the handling group's name.
	Group string
	// Header holds the NATS headers (case-sensitive keys).
	Header nats.Header

	raw jetstream.Msg
}

// decode builds a Message from a JetStream delivery.
func decode(group string, m jetstream.Msg) (*Message, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", ErrBadMessage, err)
	}
	out := &Message{
		Subject:   m.Subject(),
		Stream:    md.Stream,
		Sequence:  md.Sequence.Stream,
		Delivered: md.NumDelivered,
		Group:     group,
		Header:    m.Headers(),
		raw:       m,
	}
	if orig := m.Headers().Get(natsx.HeaderOriginalSubject); orig != "" {
		out.Subject = orig
	}
	switch ct := m.Headers().Get(natsx.HeaderContentType); ct {
	case natsx.ContentTypeEnrichedEvent:
		out.Enriched = &spectorav1.EnrichedEvent{}
		if err := proto.Unmarshal(m.Data(), out.Enriched); err != nil {
			return out, fmt.Errorf("%w: EnrichedEvent: %v", ErrBadMessage, err)
		}
		out.Event = out.Enriched.GetEvent()
		if out.Event == nil {
			return out, fmt.Errorf("%w: EnrichedEvent without event", ErrBadMessage)
		}
	case natsx.ContentTypeWebhookEvent, "":
		out.Event = &spectorav1.WebhookEvent{}
		if err := proto.Unmarshal(m.Data(), out.Event); err != nil {
			return out, fmt.Errorf("%w: WebhookEvent: %v", ErrBadMessage, err)
		}
	default:
		return out, fmt.Errorf("%w: unknown Content-Type %q", ErrBadMessage, ct)
	}
	return out, nil
}
