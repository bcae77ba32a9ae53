package consumers

import (
	"errors"
	"time"
)

// Action is what the runtime does with a message after its handler ran.
type Action int

const (
	// ActionAck acknowledges: the group is done with the message.
	ActionAck Action = iota
	// ActionRetry naks with a delay: the message comes back later.
	ActionRetry
	// ActionDeadLetter stores the message in the DLQ, then terminates it.
	ActionDeadLetter
)

// String names the action as in metrics.
func (a Action) String() string {
	switch a {
	case ActionAck:
		return "ack"
	case ActionRetry:
		return "retry"
	default:
		return "dead_lettered"
	}
}

// Decision is an action with its delay (for ActionRetry) and reason (for
// ActionDeadLetter: "permanent" or "max_deliveries").
type Decision struct {
	Action Action
	Delay  time.Duration
	Reason string
}

// Decide is the one ack policy: success → ack; a permanent error, or a failure
// on the last allowed delivery → dead-letter; any other error → retry after
// backoff[delivery-1] (the last entry repeats), or later if the error asks for
// it (RetryAfterError). delivered counts from 1.
func Decide(err error, delivered uint64, maxDeliver int, backoff []time.Duration) Decision {
	if err == nil {
		return Decision{Action: ActionAck}
	}
	if errors.Is(err, ErrPermanent) {
		return Decision{Action: ActionDeadLetter, Reason: "permanent"}
	}
	if maxDeliver > 0 && delivered >= uint64(maxDeliver) {
		return Decision{Action: ActionDeadLetter, Reason: "max_deliveries"}
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
	return Decision{Action: ActionRetry, Delay: delay}
}
