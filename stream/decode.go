package stream

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// Event is a decoded message of the raw or enriched stream, or a dead letter
// or redrive of one.
type Event struct {
	// Webhook is the webhook as the gateway stored it; for an enriched
	// message, Enriched.Event. Never nil when Decode succeeds.
	Webhook *spectorav1.WebhookEvent
	// Enriched is set for messages of the enriched stream.
	Enriched *spectorav1.EnrichedEvent
}

// Decode decodes a message body by its Content-Type header. A message without
// one is taken as a WebhookEvent (the raw stream's only type).
func Decode(h nats.Header, data []byte) (Event, error) {
	switch ct := h.Get(HeaderContentType); ct {
	case ContentTypeEnrichedEvent:
		var e spectorav1.EnrichedEvent
		if err := proto.Unmarshal(data, &e); err != nil {
			return Event{}, fmt.Errorf("%w: EnrichedEvent: %v", ErrUndecodable, err)
		}
		if e.GetEvent() == nil {
			return Event{}, fmt.Errorf("%w: EnrichedEvent without its event", ErrUndecodable)
		}
		return Event{Webhook: e.GetEvent(), Enriched: &e}, nil
	case ContentTypeWebhookEvent, "":
		var w spectorav1.WebhookEvent
		if err := proto.Unmarshal(data, &w); err != nil {
			return Event{}, fmt.Errorf("%w: WebhookEvent: %v", ErrUndecodable, err)
		}
		return Event{Webhook: &w}, nil
	default:
		return Event{}, fmt.Errorf("%w: unknown Content-Type %q", ErrUndecodable, ct)
	}
}

// DecodeMsg decodes a core NATS message (from a plain subscription or a
// stream view) like Decode.
func DecodeMsg(m *nats.Msg) (Event, error) { return Decode(m.Header, m.Data) }

// OriginalSubject is the subject an event was first published on: the
// HeaderOriginalSubject of a dead letter or redrive, otherwise subject itself.
func OriginalSubject(subject string, h nats.Header) string {
	if orig := h.Get(HeaderOriginalSubject); orig != "" {
		return orig
	}
	return subject
}

// RecordStatusName is the short name of a record status, as in the
// HeaderRecordStatus header: found, gone, not_fetched.
func RecordStatusName(s spectorav1.RecordStatus) string {
	switch s {
	case spectorav1.RecordStatus_RECORD_STATUS_FOUND:
		return "found"
	case spectorav1.RecordStatus_RECORD_STATUS_GONE:
		return "gone"
	case spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED:
		return "not_fetched"
	}
	return "unspecified"
}
