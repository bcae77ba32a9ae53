package gateway

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Inbound is one verified webhook with everything the envelope needs.
type Inbound struct {
	ID          string
	Type        string
	RecordID    string
	Source      string
	Route       stream.Route
	SignedAt    time.Time
	ReceivedAt  time.Time
	ContentType string
	Body        []byte
}

// Envelope builds the protobuf event stored in JetStream.
func Envelope(in Inbound) *spectorav1.WebhookEvent {
	return envelope(&in, in.Route.Subject())
}

func envelope(in *Inbound, subject string) *spectorav1.WebhookEvent {
	// One allocation for the event and its two timestamps.
	e := &struct {
		ev               spectorav1.WebhookEvent
		signed, received timestamppb.Timestamp
	}{}
	e.signed = timestamppb.Timestamp{Seconds: in.SignedAt.Unix(), Nanos: int32(in.SignedAt.Nanosecond())}
	e.received = timestamppb.Timestamp{Seconds: in.ReceivedAt.Unix(), Nanos: int32(in.ReceivedAt.Nanosecond())}
	e.ev.Id = in.ID
	e.ev.Type = in.Type
	e.ev.Resource = in.Route.Resource
	e.ev.Action = in.Route.Action
	e.ev.RecordId = in.RecordID
	e.ev.Source = in.Source
	e.ev.Subject = subject
	e.ev.SignedAt = &e.signed
	e.ev.ReceivedAt = &e.received
	e.ev.ContentType = contentType(in.ContentType)
	e.ev.Body = in.Body
	return &e.ev
}

// Message builds the NATS message for in: the protobuf envelope as data, and
// the message ID, type, record ID, source and content type as headers, so a
// subscriber can route without decoding.
func Message(in Inbound) (*nats.Msg, error) {
	subject := in.Route.Subject()
	data, err := proto.Marshal(envelope(&in, subject))
	if err != nil {
		return nil, fmt.Errorf("marshal envelope: %w", err)
	}
	// The header values share one backing array: one allocation, not five.
	vals := make([]string, 0, 5)
	h := make(nats.Header, 8)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set(stream.HeaderMsgID, in.ID)
	set(stream.HeaderContentType, stream.ContentTypeWebhookEvent)
	set(stream.HeaderSource, in.Source)
	if in.Type != "" {
		set(stream.HeaderEventType, stream.HeaderValue(in.Type))
	}
	if in.RecordID != "" {
		set(stream.HeaderRecordID, stream.HeaderValue(in.RecordID))
	}
	return &nats.Msg{Subject: subject, Header: h, Data: data}, nil
}

// contentType keeps the request's Content-Type storable: the envelope field
// is a protobuf string, which must be UTF-8, so invalid bytes become U+FFFD,
// and it is cut to 256 bytes. The body itself is kept byte for byte.
func contentType(ct string) string {
	if !utf8.ValidString(ct) {
		ct = strings.ToValidUTF8(ct, "\uFFFD")
	}
	if len(ct) > 256 {
		ct = strings.ToValidUTF8(ct[:256], "")
	}
	return ct
}
