package stream

import (
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Dead-letter reasons (HeaderDLQReason).
const (
	// ReasonPermanent: the handler returned a permanent error.
	ReasonPermanent = "permanent"
	// ReasonMaxDeliveries: the group's last allowed delivery failed, or went
	// unanswered.
	ReasonMaxDeliveries = "max_deliveries"
)

// DeadLetter is the metadata a consumer group writes on a dead letter, next
// to the original message's own headers and body.
type DeadLetter struct {
	// Group is the consumer group that gave up.
	Group string
	// OriginalSubject, OriginalStream and OriginalSequence locate the message
	// as first stored; a redriven message that fails again keeps them.
	OriginalSubject  string
	OriginalStream   string
	OriginalSequence uint64
	// Deliveries is how many times the group received the message.
	Deliveries uint64
	// Reason is ReasonPermanent or ReasonMaxDeliveries.
	Reason string
	// Error is the handler's last error.
	Error string
	// Time is when the message was dead-lettered.
	Time time.Time
}

// SetHeaders writes d into h.
func (d DeadLetter) SetHeaders(h nats.Header) {
	h.Set(HeaderOriginalSubject, d.OriginalSubject)
	h.Set(HeaderOriginalStream, d.OriginalStream)
	h.Set(HeaderOriginalSequence, strconv.FormatUint(d.OriginalSequence, 10))
	h.Set(HeaderDLQGroup, d.Group)
	h.Set(HeaderDLQDeliveries, strconv.FormatUint(d.Deliveries, 10))
	h.Set(HeaderDLQReason, d.Reason)
	h.Set(HeaderDLQError, HeaderValue(d.Error))
	h.Set(HeaderDLQTime, d.Time.UTC().Format(time.RFC3339Nano))
}

// ParseDeadLetter reads the dead-letter metadata from h. It needs at least the
// group and the original stream, else it returns what it found with an error
// wrapping ErrNotDeadLetter (a redriven message keeps its Original* headers
// but has no group); a missing number or time is left zero.
func ParseDeadLetter(h nats.Header) (DeadLetter, error) {
	d := DeadLetter{
		Group:           h.Get(HeaderDLQGroup),
		OriginalSubject: h.Get(HeaderOriginalSubject),
		OriginalStream:  h.Get(HeaderOriginalStream),
		Reason:          h.Get(HeaderDLQReason),
		Error:           h.Get(HeaderDLQError),
	}
	d.OriginalSequence, _ = strconv.ParseUint(h.Get(HeaderOriginalSequence), 10, 64)
	d.Deliveries, _ = strconv.ParseUint(h.Get(HeaderDLQDeliveries), 10, 64)
	d.Time, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDLQTime))
	if d.Group == "" || d.OriginalStream == "" {
		return d, fmt.Errorf("%w: %s or %s header missing", ErrNotDeadLetter, HeaderDLQGroup, HeaderOriginalStream)
	}
	return d, nil
}

// ClearDeadLetter removes the headers that describe one dead-lettering
// (group, deliveries, reason, error, time), for a redrive. The original
// subject, stream and sequence stay: they still say where the event began.
func ClearDeadLetter(h nats.Header) {
	for _, k := range []string{HeaderDLQGroup, HeaderDLQDeliveries, HeaderDLQReason, HeaderDLQError, HeaderDLQTime} {
		h.Del(k)
	}
}
