package consumers

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrPermanent marks a handler error that no retry can fix: the message is
	// terminated and dead-lettered at once. Wrap with Permanent or
	// fmt.Errorf("...: %w", consumers.ErrPermanent).
	ErrPermanent = errors.New("permanent failure")
	// ErrInvalidGroup means a group's configuration is invalid; the message
	// names the setting.
	ErrInvalidGroup = errors.New("invalid consumer group")
	// ErrDeadLetter means a dead letter could not be stored; the original is
	// then retried, never dropped.
	ErrDeadLetter = errors.New("dead-letter publish failed")
	// ErrBadMessage means a message's body is not the protobuf it should be.
	ErrBadMessage = errors.New("undecodable message")
	// ErrAPI means Spectora's API call failed in a way worth retrying.
	ErrAPI = errors.New("spectora api")
	// ErrInvalidAPIConfig means an API client setting is invalid.
	ErrInvalidAPIConfig = errors.New("invalid Spectora API configuration")
	// ErrNotFound means a dead letter or group does not exist.
	ErrNotFound = errors.New("not found")
)

// Permanent marks err as permanent (see ErrPermanent).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// RetryAfterError asks for the next delivery no sooner than Delay, e.g. when
// Spectora's API answered 429 with Retry-After.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }
