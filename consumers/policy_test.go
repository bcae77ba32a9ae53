package consumers_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/stream"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	backoff := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	transient := errors.New("api down")
	retry := func(d time.Duration) consumers.Decision {
		return consumers.Decision{Outcome: consumers.OutcomeRetry, Delay: d}
	}
	dead := func(reason string) consumers.Decision {
		return consumers.Decision{Outcome: consumers.OutcomeDeadLettered, Reason: reason}
	}
	ack := consumers.Decision{Outcome: consumers.OutcomeAck}
	tests := []struct {
		name      string
		err       error
		delivered uint64
		want      consumers.Decision
	}{
		{"success", nil, 1, ack},
		{"success on last delivery", nil, 5, ack},
		{"first failure", transient, 1, retry(time.Second)},
		{"second failure", transient, 2, retry(5 * time.Second)},
		{"past the schedule repeats the last", transient, 4, retry(30 * time.Second)},
		{"last delivery fails", transient, 5, dead(stream.ReasonMaxDeliveries)},
		{"permanent", consumers.Permanent(transient), 1, dead(stream.ReasonPermanent)},
		{"permanent wrapped with %w", fmt.Errorf("bad: %w", consumers.ErrPermanent), 2, dead(stream.ReasonPermanent)},
		{"retry-after longer than backoff", consumers.RetryAfter(time.Minute, transient), 1, retry(time.Minute)},
		{"retry-after shorter than backoff", consumers.RetryAfter(time.Millisecond, transient), 2, retry(5 * time.Second)},
		{"a panic is retried", fmt.Errorf("%w: boom", consumers.ErrPanic), 1, retry(time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := consumers.Decide(tt.err, tt.delivered, 5, backoff); got != tt.want {
				t.Fatalf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}
