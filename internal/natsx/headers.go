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

// ContentTypeWebhookEvent is the Content-Type of raw messages in SPECTORA.
const ContentTypeWebhookEvent = "application/protobuf; proto=spectora.v1.WebhookEvent"

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
