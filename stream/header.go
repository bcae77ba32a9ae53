package stream

import (
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// NATS header names. NATS headers are case-sensitive: read them with exactly
// these keys.
const (
	// HeaderMsgID is JetStream's deduplication header. On raw and enriched
	// events it is the webhook's svix-id; on reconciled events it is derived
	// from the record (see HeaderOrigin).
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderExpectedStream is set by every publisher of this system: the
	// server refuses the message unless it lands in that stream.
	HeaderExpectedStream = "Nats-Expected-Stream"
	// HeaderContentType names the body's encoding and protobuf message type
	// (ContentTypeWebhookEvent or ContentTypeEnrichedEvent).
	HeaderContentType = "Content-Type"
	// HeaderEventType carries the event type as Spectora sent it.
	HeaderEventType = "Spectora-Event-Type"
	// HeaderRecordID carries the affected record's ID.
	HeaderRecordID = "Spectora-Record-Id"
	// HeaderSource carries the webhook source name ("default" or a named source).
	HeaderSource = "Spectora-Source"
	// HeaderOrigin is absent on webhooks and "reconcile" on events the
	// reconciler recovered from Spectora's API.
	HeaderOrigin = "Spectora-Origin"
	// HeaderRecordStatus is an enriched event's record status: found, gone
	// or not_fetched.
	HeaderRecordStatus = "Spectora-Record-Status"
	// HeaderTraceParent and HeaderTraceState carry W3C trace context, in
	// exactly these lowercase keys.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// Headers on dead letters and redriven messages.
const (
	// HeaderOriginalSubject is the subject a dead letter or redriven message
	// was first published on.
	HeaderOriginalSubject = "Spectora-Original-Subject"
	// HeaderOriginalStream is the stream the message was first stored in.
	HeaderOriginalStream = "Spectora-Original-Stream"
	// HeaderOriginalSequence is the message's sequence in its original stream.
	HeaderOriginalSequence = "Spectora-Original-Sequence"
	// HeaderDLQGroup is the group that gave up on the message.
	HeaderDLQGroup = "Spectora-Dlq-Group"
	// HeaderDLQDeliveries is how many times the group received the message.
	HeaderDLQDeliveries = "Spectora-Dlq-Deliveries"
	// HeaderDLQReason is ReasonPermanent or ReasonMaxDeliveries.
	HeaderDLQReason = "Spectora-Dlq-Reason"
	// HeaderDLQError is the handler's last error.
	HeaderDLQError = "Spectora-Dlq-Error"
	// HeaderDLQTime is when the message was dead-lettered (RFC 3339).
	HeaderDLQTime = "Spectora-Dlq-Time"
	// HeaderRedrivenFrom is the dead-letter sequence a redriven message came from.
	HeaderRedrivenFrom = "Spectora-Redriven-From"
)

// Content types of message bodies.
const (
	// ContentTypeWebhookEvent is the Content-Type of raw events:
	// protobuf spectora.v1.WebhookEvent.
	ContentTypeWebhookEvent = "application/protobuf; proto=spectora.v1.WebhookEvent"
	// ContentTypeEnrichedEvent is the Content-Type of enriched events:
	// protobuf spectora.v1.EnrichedEvent.
	ContentTypeEnrichedEvent = "application/protobuf; proto=spectora.v1.EnrichedEvent"
)

// OriginReconcile is HeaderOrigin's value on events the reconciler published.
const OriginReconcile = "reconcile"

// maxHeaderValue bounds one header value this system writes.
const maxHeaderValue = 512

// HeaderValue makes s safe as a NATS header value: control characters (which
// would break the protocol line) become spaces, invalid UTF-8 becomes U+FFFD,
// and it is cut to 512 bytes on a character boundary.
func HeaderValue(s string) string {
	clean := utf8.ValidString(s)
	for i := 0; clean && i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
		}
	}
	if !clean {
		s = strings.ToValidUTF8(s, "\uFFFD")
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, s)
	}
	if len(s) > maxHeaderValue {
		cut := maxHeaderValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// CopyHeaders copies src's headers into dst, except JetStream's own (those
// starting with "Nats-"), which belong to the stored message and must not be
// re-sent with a copy of it.
func CopyHeaders(dst, src nats.Header) {
	for k, v := range src {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		dst[k] = append([]string(nil), v...)
	}
}
