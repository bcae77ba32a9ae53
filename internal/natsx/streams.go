package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream or updates it to cfg; running it again with the
// same configuration changes nothing. While a cluster is still electing its meta
// leader the server answers "unavailable"; those answers are retried until ctx
// ends.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, logger *slog.Logger) (jetstream.Stream, error) {
	wait := 250 * time.Millisecond
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := js.CreateOrUpdateStream(attemptCtx, cfg)
		cancel()
		if err == nil {
			return s, nil
		}
		if !transient(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s on %v: %w", ErrStreamSetup, cfg.Name, cfg.Subjects, err)
		}
		if logger != nil {
			logger.Warn("stream not ready yet; retrying", "stream", cfg.Name, "err", err, "in", wait)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s: %w (last error: %v)", ErrStreamSetup, cfg.Name, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// transient reports whether a stream API error may go away by itself (no
// responders yet, a cluster without a meta leader, a timeout).
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}
