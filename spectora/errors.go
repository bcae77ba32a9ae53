package spectora

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrConfig means a client setting is invalid; the message names the field.
	ErrConfig = errors.New("invalid Spectora API client configuration")
	// ErrAPI means a request failed; errors.As finds the *Error with details.
	ErrAPI = errors.New("spectora api")
)

// Error is a failed API request.
type Error struct {
	// Path is the request path, e.g. /v2/inspections/42.
	Path string
	// Status is the HTTP status, 0 when no response came.
	Status int
	// RetryAfter is how long the API asked to wait (429), if it did.
	RetryAfter time.Duration
	// Permanent means repeating the request can't help (a 4xx other than 408
	// and 429, an answer that is too large).
	Permanent bool
	// Err is the underlying cause.
	Err error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("spectora api: GET %s: %d: %v", e.Path, e.Status, e.Err)
	}
	return fmt.Sprintf("spectora api: GET %s: %v", e.Path, e.Err)
}

// Unwrap returns ErrAPI and the cause.
func (e *Error) Unwrap() []error { return []error{ErrAPI, e.Err} }
