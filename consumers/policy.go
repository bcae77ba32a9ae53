package consumers

import (
	"errors"
	"time"

	"github.com/spectora-stream/spectora-stream/stream"
)

// Outcome is what the runtime did with a delivery, as in metrics and spans.
type Outcome string

const (
	// OutcomeAck: the group is done with the message.
	OutcomeAck Outcome = "ack"
	// OutcomeRetry: nak with a delay; the message comes back later.
	OutcomeRetry Outcome = "retry"
	// OutcomeDeadLettered: stored in the dead-letter stream, then terminated.
	OutcomeDeadLettered Outcome = "dead_lettered"
	// OutcomeDrained: handed back at shutdown, unprocessed; it is redelivered.
	OutcomeDrained Outcome = "drained"
)

// Decision is an outcome with its delay (OutcomeRetry) and reason
// (OutcomeDeadLettered: stream.ReasonPermanent or stream.ReasonMaxDeliveries).
type Decision struct {
	Outcome Outcome
	Delay   time.Duration
	Reason  string
}

// Decide is the one ack policy: success → ack; a permanent error, or a failure
// on the last allowed delivery → dead-letter; any other error → retry after
// backoff[delivered-1] (the last entry repeats), or later if the error asks
// for it (RetryAfterError). delivered counts from 1.
func Decide(err error, delivered uint64, maxDeliver int, backoff []time.Duration) Decision {
	switch {
	case err == nil:
		return Decision{Outcome: OutcomeAck}
	case errors.Is(err, ErrPermanent):
		return Decision{Outcome: OutcomeDeadLettered, Reason: stream.ReasonPermanent}
	case errors.Is(err, errUnanswered), maxDeliver > 0 && delivered >= uint64(maxDeliver):
		return Decision{Outcome: OutcomeDeadLettered, Reason: stream.ReasonMaxDeliveries}
	}
	var delay time.Duration
	if len(backoff) > 0 {
		i := int(min(delivered, uint64(len(backoff)))) - 1
		delay = backoff[max(i, 0)]
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.Delay > delay {
		delay = ra.Delay
	}
	return Decision{Outcome: OutcomeRetry, Delay: delay}
}
