package consumers

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	backoff := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	transient := errors.New("api down")
	tests := []struct {
		name      string
		err       error
		delivered uint64
		want      Decision
	}{
		{"success", nil, 1, Decision{Action: ActionAck}},
		{"success on last delivery", nil, 5, Decision{Action: ActionAck}},
		{"first failure", transient, 1, Decision{Action: ActionRetry, Delay: time.Second}},
		{"second failure", transient, 2, Decision{Action: ActionRetry, Delay: 5 * time.Second}},
		{"past the schedule repeats the last", transient, 4, Decision{Action: ActionRetry, Delay: 30 * time.Second}},
		{"last delivery fails", transient, 5, Decision{Action: ActionDeadLetter, Reason: "max_deliveries"}},
		{"permanent", Permanent(transient), 1, Decision{Action: ActionDeadLetter, Reason: "permanent"}},
		{"permanent wrapped with %w", fmt.Errorf("bad: %w", ErrPermanent), 2, Decision{Action: ActionDeadLetter, Reason: "permanent"}},
		{"retry-after longer than backoff", &RetryAfterError{Delay: time.Minute, Err: transient}, 1, Decision{Action: ActionRetry, Delay: time.Minute}},
		{"retry-after shorter than backoff", &RetryAfterError{Delay: time.Millisecond, Err: transient}, 2, Decision{Action: ActionRetry, Delay: 5 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.err, tt.delivered, 5, backoff); got != tt.want {
				t.Fatalf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	h := func(_ ctxT, _ *Message) error { return nil }
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no name", Config{Handler: h}},
		{"bad name", Config{Name: "Bad.Name", Handler: h}},
		{"no handler", Config{Name: "g"}},
		{"bad stream", Config{Name: "g", Handler: h, Stream: "OTHER"}},
		{"concurrency", Config{Name: "g", Handler: h, Concurrency: -1}},
		{"ack wait", Config{Name: "g", Handler: h, AckWait: time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.setDefaults()
			if err := c.validate(); !errors.Is(err, ErrInvalidGroup) {
				t.Fatalf("validate() = %v, want ErrInvalidGroup", err)
			}
		})
	}
}
