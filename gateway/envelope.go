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
	return &spectorav1.WebhookEvent{
		Id:          in.ID,
		Type:        in.Type,
		Resource:    in.Route.Resource,
		Action:      in.Route.Action,
		RecordId:    in.RecordID,
		Source:      in.Source,
		Subject:     in.Route.Subject(),
		SignedAt:    timestamppb.New(in.SignedAt),
		ReceivedAt:  timestamppb.New(in.ReceivedAt),
		ContentType: contentType(in.ContentType),
		Body:        in.Body,
	}
}

// Message builds the NATS message for in: the protobuf envelope as data, and
// the message ID, type, record ID, source and content type as headers, so a
// subscriber can route without decoding.
func Message(in Inbound) (*nats.Msg, error) {
	data, err := proto.Marshal(Envelope(in))
	if err != nil {
		return nil, fmt.Errorf("marshal envelope: %w", err)
	}
	msg := nats.NewMsg(in.Route.Subject())
	msg.Data = data
	msg.Header.Set(stream.HeaderMsgID, in.ID)
	msg.Header.Set(stream.HeaderContentType, stream.ContentTypeWebhookEvent)
	msg.Header.Set(stream.HeaderSource, in.Source)
	if in.Type != "" {
		msg.Header.Set(stream.HeaderEventType, stream.HeaderValue(in.Type))
	}
	if in.RecordID != "" {
		msg.Header.Set(stream.HeaderRecordID, stream.HeaderValue(in.RecordID))
	}
	return msg, nil
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
