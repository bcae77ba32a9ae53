package stream

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Limits are the operator-tunable settings of the raw and enriched streams.
type Limits struct {
	// Replicas is the number of copies in a cluster: 1 on a single server,
	// 3 in production.
	Replicas int
	// MaxAge is how long events are kept; 0 keeps them until MaxBytes.
	MaxAge time.Duration
	// MaxBytes caps a stream's size; 0 is unlimited. A full stream refuses
	// new events (the gateway answers 503, and Svix retries) instead of
	// evicting stored ones that a group may not have processed yet.
	MaxBytes int64
	// Duplicates is the deduplication window for Nats-Msg-Id. It must cover
	// the longest gap between two Svix retries (10 h), so that a webhook that
	// was stored but whose 2xx was lost is recognised when Svix sends it again.
	Duplicates time.Duration
}

// DefaultLimits are the limits used when nothing is set: one replica, a week
// of events, no size cap, a 24-hour duplicate window.
func DefaultLimits() Limits {
	return Limits{Replicas: 1, MaxAge: 7 * 24 * time.Hour, Duplicates: 24 * time.Hour}
}

// RawConfig is the full JetStream configuration of the raw stream.
func RawConfig(l Limits) jetstream.StreamConfig {
	maxBytes := l.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        Raw,
		Description: "Verified Spectora webhooks, one message per Svix message ID",
		Subjects:    Subjects(Raw),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		Replicas:    l.Replicas,
		MaxAge:      l.MaxAge,
		MaxBytes:    maxBytes,
		Duplicates:  l.Duplicates,
	}
}

// EnrichedConfig is the enriched stream: the raw stream's limits; its
// duplicate window drops republishes of one source event.
func EnrichedConfig(l Limits) jetstream.StreamConfig {
	c := RawConfig(l)
	c.Name = Enriched
	c.Description = "Spectora events with their full record attached (enricher group)"
	c.Subjects = Subjects(Enriched)
	return c
}

// DLQConfig is the dead-letter stream. Dead letters wait for an operator, so
// they are kept for maxAge (0: until purged or redriven).
func DLQConfig(replicas int, maxAge time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DLQ,
		Description: "Dead letters: spectora.dlq.<group>.<resource>.<action>",
		Subjects:    Subjects(DLQ),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    replicas,
		MaxAge:      maxAge,
		MaxBytes:    -1,
		Duplicates:  10 * time.Minute,
	}
}

// Configs are the three streams: raw, enriched and dead letters.
func Configs(l Limits, dlqMaxAge time.Duration) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{RawConfig(l), EnrichedConfig(l), DLQConfig(l.Replicas, dlqMaxAge)}
}
