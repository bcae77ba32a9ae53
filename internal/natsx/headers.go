package natsx

// NATS header names set on every raw and enriched message. NATS headers are
// case-sensitive: read them with exactly these keys.
const (
	// HeaderMsgID is JetStream's deduplication header; it carries the svix-id.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderEventType carries the event type as Spectora sent it.
	HeaderEventType = "Spectora-Event-Type"
	// HeaderRecordID carries the affected record's ID.
	HeaderRecordID = "Spectora-Record-Id"
	// HeaderSource carries the webhook source name ("default" or a named source).
	HeaderSource = "Spectora-Source"
	// HeaderContentType names the body's encoding and protobuf message type.
	HeaderContentType = "Content-Type"
)

// Headers on enriched messages, dead letters and redriven messages.
const (
	// HeaderRecordStatus is the enriched record's status: found, gone or not_fetched.
	HeaderRecordStatus = "Spectora-Record-Status"
	// HeaderOriginalSubject is the subject a dead letter or redriven message
	// was first published on.
	HeaderOriginalSubject = "Spectora-Original-Subject"
	// HeaderOriginalStream is the stream the dead letter came from.
	HeaderOriginalStream = "Spectora-Original-Stream"
	// HeaderOriginalSequence is the dead letter's sequence in its original stream.
	HeaderOriginalSequence = "Spectora-Original-Sequence"
	// HeaderDLQGroup is the group that gave up on the message.
	HeaderDLQGroup = "Spectora-Dlq-Group"
	// HeaderDLQDeliveries is how many times the group received the message.
	HeaderDLQDeliveries = "Spectora-Dlq-Deliveries"
	// HeaderDLQReason is "permanent" or "max_deliveries".
	HeaderDLQReason = "Spectora-Dlq-Reason"
	// HeaderDLQError is the handler's last error.
	HeaderDLQError = "Spectora-Dlq-Error"
	// HeaderDLQTime is when the message was dead-lettered (RFC 3339).
	HeaderDLQTime = "Spectora-Dlq-Time"
	// HeaderRedrivenFrom is the DLQ sequence a redriven message came from.
	HeaderRedrivenFrom = "Spectora-Redriven-From"
)

// ContentTypeWebhookEvent is the Content-Type of raw messages in SPECTORA.
const ContentTypeWebhookEvent = "application/protobuf; proto=spectora.v1.WebhookEvent"

// ContentTypeEnrichedEvent is the Content-Type of messages in SPECTORA_ENRICHED.
const ContentTypeEnrichedEvent = "application/protobuf; proto=spectora.v1.EnrichedEvent"

// HeaderValue makes s safe to use as a NATS header value: control characters
// (which would break the NATS protocol line) become spaces, and it is cut to
// 512 bytes.
func HeaderValue(s string) string {
	const maxLen = 512
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if !clean {
		b := []byte(s)
		for i, c := range b {
			if c < 0x20 || c == 0x7f {
				b[i] = ' '
			}
		}
		s = string(b)
	}
	if len(s) > maxLen {
		s = s[:maxLen]
	}
	return s
}
