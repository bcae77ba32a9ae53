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

// Stream names and subject filters. The three streams never overlap: token
// counts keep them apart (spectora.*.* has three tokens, the enriched stream four,
// the dead-letter stream five), so `nats sub 'spectora.>'` sees all of them.
const (
	// RawStream holds verified webhooks as the gateway stored them.
	RawStream = "SPECTORA"
	// RawSubjects is RawStream's subject filter: spectora.<resource>.<action>.
	RawSubjects = "spectora.*.*"
	// SubjectPrefix starts every subject this system publishes.
	SubjectPrefix = "spectora"

	// EnrichedStream holds events with their full record, republished by the
	// enricher group for services in any language.
	EnrichedStream = "SPECTORA_ENRICHED"
	// EnrichedSubjects is EnrichedStream's filter: spectora.enriched.<resource>.<action>.
	EnrichedSubjects = "spectora.enriched.*.*"
	// EnrichedPrefix starts every enriched subject.
	EnrichedPrefix = "spectora.enriched"

	// DLQStream holds dead letters: messages a group gave up on.
	DLQStream = "SPECTORA_DLQ"
	// DLQSubjects is DLQStream's filter: spectora.dlq.<group>.<resource>.<action>.
	DLQSubjects = "spectora.dlq.*.*.*"
	// DLQPrefix starts every dead-letter subject.
	DLQPrefix = "spectora.dlq"

	// RedriveResource is the resource token of redrive subjects: a dead letter
	// redriven to group G is republished on spectora.redrive.G (raw stream) or
	// spectora.enriched.redrive.G (enriched stream), which only G's consumer
	// filters on, so other groups don't see it twice. The gateway never routes
	// a webhook to it.
	RedriveResource = "redrive"

	// RecordBucket is the key-value bucket caching Spectora records for every
	// group and instance.
	RecordBucket = "spectora_records"
)

// RedriveSubject is the subject on which group's dead letters come back, in
// the stream the group reads.
func RedriveSubject(stream, group string) string {
	if stream == EnrichedStream {
		return EnrichedPrefix + "." + RedriveResource + "." + group
	}
	return SubjectPrefix + "." + RedriveResource + "." + group
}

// StreamConfig is the operator-tunable part of a stream (replicas, retention and
// the duplicate window).
type StreamConfig struct {
	// Replicas is the number of copies in a cluster (NATS_STREAM_REPLICAS); 1 on
	// the embedded server, 3 in production.
	Replicas int
	// MaxAge is how long messages are kept (NATS_STREAM_MAX_AGE); 0 keeps them
	// until MaxBytes is reached.
	MaxAge time.Duration
	// MaxBytes caps the stream's size (NATS_STREAM_MAX_BYTES); 0 or -1 is unlimited.
	MaxBytes int64
	// Duplicates is the deduplication window for Nats-Msg-Id
	// (NATS_DUPLICATE_WINDOW). It must cover the longest gap between two Svix
	// retries (10 h), so that a webhook that was stored but whose 2xx was lost is
	// recognised when Svix sends it again.
	Duplicates time.Duration
}

// DefaultStreamConfig is the configuration used when nothing is set.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{
		Replicas:   1,
		MaxAge:     7 * 24 * time.Hour,
		Duplicates: 24 * time.Hour,
	}
}

// Validate checks the settings and names the offending one.
func (c StreamConfig) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("%w: NATS_STREAM_REPLICAS %d: want 1 to 5", ErrInvalidConfig, c.Replicas)
	case c.MaxAge < 0:
		return fmt.Errorf("%w: NATS_STREAM_MAX_AGE %s: must not be negative", ErrInvalidConfig, c.MaxAge)
	case c.Duplicates < time.Second:
		return fmt.Errorf("%w: NATS_DUPLICATE_WINDOW %s: want at least 1s (Svix retries need hours)", ErrInvalidConfig, c.Duplicates)
	case c.MaxAge > 0 && c.Duplicates > c.MaxAge:
		return fmt.Errorf("%w: NATS_DUPLICATE_WINDOW %s is longer than NATS_STREAM_MAX_AGE %s", ErrInvalidConfig, c.Duplicates, c.MaxAge)
	}
	return nil
}

// RawStreamConfig is the full JetStream configuration of the SPECTORA stream.
func RawStreamConfig(c StreamConfig) jetstream.StreamConfig {
	maxBytes := c.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        RawStream,
		Description: "Verified Spectora webhooks, one message per Svix message ID",
		Subjects:    []string{RawSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    c.Replicas,
		MaxAge:      c.MaxAge,
		MaxBytes:    maxBytes,
		Duplicates:  c.Duplicates,
	}
}

// EnrichedStreamConfig is the SPECTORA_ENRICHED stream: same retention as the
// raw stream; its duplicate window drops republishes of one source message.
func EnrichedStreamConfig(c StreamConfig) jetstream.StreamConfig {
	sc := RawStreamConfig(c)
	sc.Name = EnrichedStream
	sc.Description = "Spectora events with their full record attached (enricher group)"
	sc.Subjects = []string{EnrichedSubjects}
	return sc
}

// DLQStreamConfig is the SPECTORA_DLQ stream. Dead letters wait for an
// operator, so they are kept for maxAge (0: until purged or redriven).
func DLQStreamConfig(c StreamConfig, maxAge time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "Dead letters: spectora.dlq.<group>.<resource>.<action>",
		Subjects:    []string{DLQSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    c.Replicas,
		MaxAge:      maxAge,
		Duplicates:  10 * time.Minute,
	}
}

// StreamConfigs are the three streams the consumer groups need: raw, enriched
// and dead letters (kept for dlqMaxAge; 0 keeps them until purged).
func StreamConfigs(c StreamConfig, dlqMaxAge time.Duration) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{RawStreamConfig(c), EnrichedStreamConfig(c), DLQStreamConfig(c, dlqMaxAge)}
}

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
