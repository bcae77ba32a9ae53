package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Explicit says which limits of a stream the operator set through this
// program's settings. The others are defaults: applied when the stream is
// created, and left as they are on an existing stream, where an operator may
// have changed them with a NATS client.
type Explicit struct {
	Replicas, MaxAge, MaxBytes, Duplicates bool
}

// AllExplicit applies every limit.
var AllExplicit = Explicit{Replicas: true, MaxAge: true, MaxBytes: true, Duplicates: true}

// Drift is a limit of an existing stream that differs from its default and
// was kept, because no setting asks for another value.
type Drift struct {
	Stream, Limit, Found, Default, Setting string
}

func (d Drift) String() string {
	return fmt.Sprintf("stream %s: %s is %s, not the default %s (changed outside spectora-stream); kept. Set %s to manage it here",
		d.Stream, d.Limit, d.Found, d.Default, d.Setting)
}

// Provision creates the stream with cfg, or brings an existing one to it:
// its name, subjects, storage, retention and discard policy are this
// program's and always set; its limits are set where explicit says so and
// kept otherwise, each kept difference returned as a Drift (and logged).
// While a cluster is still electing its meta leader the server answers
// "unavailable"; those answers are retried until ctx ends.
func Provision(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, explicit Explicit, logger *slog.Logger) (jetstream.Stream, []Drift, error) {
	var drifts []Drift
	s, err := retry(ctx, cfg, logger, func(ctx context.Context) (jetstream.Stream, error) {
		existing, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return js.CreateStream(ctx, cfg)
		}
		if err != nil {
			return nil, err
		}
		info, err := existing.Info(ctx)
		if err != nil {
			return nil, err
		}
		want, d := merge(cfg, info.Config, explicit)
		drifts = d
		return js.UpdateStream(ctx, want)
	})
	for _, d := range drifts {
		if logger != nil {
			logger.Warn(d.String())
		}
	}
	return s, drifts, err
}

// merge is cfg with the non-explicit limits taken from the existing config.
func merge(cfg, found jetstream.StreamConfig, explicit Explicit) (jetstream.StreamConfig, []Drift) {
	var drifts []Drift
	keep := func(isExplicit bool, name, setting string, def, got any, apply func()) {
		if isExplicit || def == got {
			return
		}
		apply()
		drifts = append(drifts, Drift{Stream: cfg.Name, Limit: name, Found: fmt.Sprint(got), Default: fmt.Sprint(def), Setting: setting})
	}
	keep(explicit.Replicas, "replicas", "NATS_STREAM_REPLICAS", cfg.Replicas, found.Replicas, func() { cfg.Replicas = found.Replicas })
	keep(explicit.MaxAge, "max_age", maxAgeSetting(cfg.Name), cfg.MaxAge, found.MaxAge, func() { cfg.MaxAge = found.MaxAge })
	keep(explicit.MaxBytes, "max_bytes", "NATS_STREAM_MAX_BYTES", cfg.MaxBytes, found.MaxBytes, func() { cfg.MaxBytes = found.MaxBytes })
	keep(explicit.Duplicates, "duplicate_window", "NATS_DUPLICATE_WINDOW", cfg.Duplicates, found.Duplicates, func() { cfg.Duplicates = found.Duplicates })
	return cfg, drifts
}

func maxAgeSetting(stream string) string {
	if stream == "SPECTORA_DLQ" {
		return "DLQ_MAX_AGE"
	}
	return "NATS_STREAM_MAX_AGE"
}

// EnsureStream creates the stream or updates it to cfg, every limit
// included; running it again with the same configuration changes nothing.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, logger *slog.Logger) (jetstream.Stream, error) {
	s, _, err := Provision(ctx, js, cfg, AllExplicit, logger)
	return s, err
}

// retry runs op until it succeeds, fails for good, or ctx ends.
func retry(ctx context.Context, cfg jetstream.StreamConfig, logger *slog.Logger, op func(context.Context) (jetstream.Stream, error)) (jetstream.Stream, error) {
	wait := 250 * time.Millisecond
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := op(attemptCtx)
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
