package consumers

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrPermanent marks a handler error that no retry can fix: the message is
	// dead-lettered and terminated at once. Wrap with Permanent or
	// fmt.Errorf("...: %w", consumers.ErrPermanent).
	ErrPermanent = errors.New("permanent failure")
	// ErrInvalidConfig means a group's configuration is invalid; the message
	// names the field.
	ErrInvalidConfig = errors.New("invalid consumer group configuration")
	// ErrDeadLetter means a dead letter could not be stored; the original is
	// then retried, never dropped.
	ErrDeadLetter = errors.New("dead-letter publish failed")
	// ErrRunning means Run was called on a group that is already running.
	ErrRunning = errors.New("consumer group already running")
	// ErrDrainTimeout means handlers were still running when the drain bound
	// ran out; their messages go back to the stream.
	ErrDrainTimeout = errors.New("in-flight handlers cancelled at shutdown")
	// ErrPanic wraps a handler's panic, recovered by Recover; it is retried
	// like any other error.
	ErrPanic = errors.New("handler panicked")

	// errUnanswered marks a delivery past MaxDeliver whose earlier deliveries
	// got no answer (a crash or a hang): it is dead-lettered without running.
	errUnanswered = errors.New("delivered too often without an answer")
)

// Permanent marks err as permanent (see ErrPermanent). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// RetryAfterError asks for the next delivery no sooner than Delay, e.g. when
// an API answered 429 with Retry-After.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// RetryAfter wraps err so the message comes back no sooner than d.
func RetryAfter(d time.Duration, err error) error { return &RetryAfterError{Delay: d, Err: err} }

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }
