package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/singleflight"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Fetcher fetches one record of one source (Spectora company) from its API.
type Fetcher interface {
	Fetch(ctx context.Context, source, resource, id string) (spectora.Record, error)
}

// Clients is a Fetcher over one API client per source; a source without a
// client of its own uses the "" entry, if any, and is otherwise not fetched.
type Clients map[string]*spectora.Client

// Fetch fetches with source's client.
func (c Clients) Fetch(ctx context.Context, source, resource, id string) (spectora.Record, error) {
	client, ok := c[source]
	if !ok {
		client, ok = c[""]
	}
	if !ok {
		return spectora.Record{Status: spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED}, nil
	}
	return client.Fetch(ctx, resource, id)
}

// Config configures an Enricher. nil Logger, Metrics and TracerProvider turn
// logs, metrics and tracing off.
type Config struct {
	Logger         *slog.Logger
	Metrics        *Metrics
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Versions, if set, records the version of every record fetched or
	// carried by a reconciled event, for the reconciler.
	Versions *Versions
	// TrackTypes are event types whose arrival is recorded in Versions (the
	// reconciler's rules' types), so a rule doesn't emit an event that came.
	TrackTypes []string
	// MemoryBytes is how many bytes of records this process keeps in memory
	// in front of the shared KV bucket (RECORD_CACHE_MEMORY_BYTES); 0 keeps
	// none. A copy in memory is used under the bucket's rule: only when it
	// was fetched at or after the event was received, and is younger than
	// MemoryTTL.
	MemoryBytes int64
	// MemoryTTL is the bucket's TTL (RECORD_CACHE_TTL); default 1h.
	MemoryTTL time.Duration
}

// Enricher finds the full record behind an event: from the shared key-value
// cache when a copy fetched after the event exists, otherwise from the API.
type Enricher struct {
	api    Fetcher
	kv     jetstream.KeyValue
	memory *memory // nil: none
	flight singleflight.Group
	cfg    Config
	tracer trace.Tracer
	log    *slog.Logger
}

// New builds an enricher. api nil means records are not fetched
// (RECORD_STATUS_NOT_FETCHED); kv nil means no shared cache.
func New(cfg Config, kv jetstream.KeyValue, api Fetcher) *Enricher {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Propagator == nil {
		cfg.Propagator = telemetry.Propagator()
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	e := &Enricher{api: api, kv: kv, cfg: cfg, tracer: tp.Tracer(telemetry.ScopeName), log: cfg.Logger.With("component", "enricher")}
	if cfg.MemoryBytes > 0 {
		ttl := cfg.MemoryTTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		e.memory = newMemory(cfg.MemoryBytes, ttl)
	}
	return e
}

// cachedRecord is a Record as stored in the KV bucket.
type cachedRecord struct {
	Status    spectorav1.RecordStatus `json:"status"`
	Path      string                  `json:"path,omitempty"`
	FetchedAt time.Time               `json:"fetched_at"`
	Body      []byte                  `json:"body,omitempty"`
}

// Record returns the record of ev. It is not fetched for *.deleted events,
// events without a record ID, unrouted events and when no API is configured.
// API failures come back as consumer errors: retried, retried after the
// API's Retry-After, or permanent.
func (e *Enricher) Record(ctx context.Context, ev *spectorav1.WebhookEvent) (spectora.Record, error) {
	notFetched := spectora.Record{Status: spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED}
	if e.api == nil || ev.GetRecordId() == "" || ev.GetAction() == "deleted" || ev.GetResource() == stream.Unrouted.Resource {
		return notFetched, nil
	}
	key := Key(ev.GetSource(), ev.GetResource(), ev.GetRecordId())
	if slices.Contains(e.cfg.TrackTypes, ev.GetType()) {
		e.saw(ctx, key, "", ev.GetType())
	}
	if len(ev.GetRecord()) > 0 {
		// The reconciler listed the record and sent it along: no fetch.
		rec := spectora.Record{Status: spectorav1.RecordStatus_RECORD_STATUS_FOUND, Body: ev.GetRecord(), FetchedAt: ev.GetRecordListedAt().AsTime()}
		if c, ok := e.read(ctx, key); !ok || c.FetchedAt.Before(rec.FetchedAt) {
			e.store(ctx, key, rec) // never over a copy fetched after the listing
		}
		e.memory.remember(key, rec)
		version := ev.GetRecordVersion()
		if version == "" && e.cfg.Versions != nil {
			version = e.cfg.Versions.Of(rec.Body)
		}
		e.saw(ctx, key, version, "")
		e.cfg.Metrics.count("carried")
		return rec, nil
	}
	eventTime := ev.GetReceivedAt().AsTime()
	if rec, ok := e.memory.recall(key, eventTime); ok {
		e.cfg.Metrics.count("memory")
		trace.SpanFromContext(ctx).AddEvent("record from memory", trace.WithAttributes(attribute.String("spectora.cache.key", key)))
		return rec, nil
	}
	for attempt := 0; ; attempt++ {
		// Concurrent look-ups of one record share one cache read and, on a
		// miss, one fetch.
		v, err, shared := e.flight.Do(key, func() (any, error) {
			if rec, ok := e.cachedSpan(ctx, key, eventTime); ok {
				e.cfg.Metrics.count("hit")
				e.memory.remember(key, rec)
				return rec, nil
			}
			rec, err := e.api.Fetch(ctx, ev.GetSource(), ev.GetResource(), ev.GetRecordId())
			if err != nil {
				return spectora.Record{}, err
			}
			e.store(ctx, key, rec)
			e.memory.remember(key, rec)
			if rec.Status == spectorav1.RecordStatus_RECORD_STATUS_FOUND && e.cfg.Versions != nil {
				e.saw(ctx, key, e.cfg.Versions.Of(rec.Body), "")
			}
			return rec, nil
		})
		if err != nil {
			return spectora.Record{}, consumerError(err)
		}
		rec := v.(spectora.Record)
		if shared && attempt < 2 && rec.Status != spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED && rec.FetchedAt.Before(eventTime) {
			// Joined a look-up whose record predates this event (another
			// caller's cache hit, or a fetch that left before this event was
			// received): look again; a new flight starts now.
			continue
		}
		if shared {
			e.cfg.Metrics.count("coalesced")
		}
		return rec, nil
	}
}

// consumerError translates an API failure into the consumer runtime's terms.
func consumerError(err error) error {
	var apiErr *spectora.Error
	if !errors.As(err, &apiErr) {
		return err
	}
	switch {
	case apiErr.RetryAfter > 0:
		return consumers.RetryAfter(apiErr.RetryAfter, err)
	case apiErr.Permanent:
		return consumers.Permanent(err)
	}
	return err
}

// cachedSpan is cached in a span of its own.
func (e *Enricher) cachedSpan(ctx context.Context, key string, eventTime time.Time) (spectora.Record, bool) {
	bucket := ""
	if e.kv != nil {
		bucket = e.kv.Bucket()
	}
	ctx, span := e.tracer.Start(ctx, "record cache get", trace.WithAttributes(
		attribute.String("spectora.cache.bucket", bucket), attribute.String("spectora.cache.key", key)))
	defer span.End()
	rec, ok := e.cached(ctx, key, eventTime)
	span.SetAttributes(attribute.Bool("spectora.cache.hit", ok))
	return rec, ok
}

// cached returns the cached record if it was fetched at or after eventTime,
// i.e. it already reflects the change the event announces.
func (e *Enricher) cached(ctx context.Context, key string, eventTime time.Time) (spectora.Record, bool) {
	c, ok := e.read(ctx, key)
	switch {
	case !ok:
		e.cfg.Metrics.count("miss")
		return spectora.Record{}, false
	case c.FetchedAt.Before(eventTime):
		e.cfg.Metrics.count("stale")
		return spectora.Record{}, false
	}
	return spectora.Record{Status: c.Status, Body: c.Body, Path: c.Path, FetchedAt: c.FetchedAt}, true
}

// read returns key's cache entry, if there is a readable one.
func (e *Enricher) read(ctx context.Context, key string) (cachedRecord, bool) {
	var c cachedRecord
	if e.kv == nil {
		return c, false
	}
	entry, err := e.kv.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			e.log.Warn("record cache read failed; fetching", "key", key, "err", err)
		}
		return c, false
	}
	return c, json.Unmarshal(entry.Value(), &c) == nil
}

// Cached returns the record the cache holds under key (see Key), for
// readers outside the enricher such as the console; the error wraps
// jetstream.ErrKeyNotFound when there is none.
func Cached(ctx context.Context, kv jetstream.KeyValue, key string) (spectora.Record, error) {
	entry, err := kv.Get(ctx, key)
	if err != nil {
		return spectora.Record{}, fmt.Errorf("record cache %s: %w", key, err)
	}
	var c cachedRecord
	if err := json.Unmarshal(entry.Value(), &c); err != nil {
		return spectora.Record{}, fmt.Errorf("record cache %s is unreadable: %w", key, err)
	}
	return spectora.Record{Status: c.Status, Body: c.Body, Path: c.Path, FetchedAt: c.FetchedAt}, nil
}

func (e *Enricher) store(ctx context.Context, key string, rec spectora.Record) {
	if e.kv == nil || rec.Status == spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED {
		return
	}
	b, err := json.Marshal(cachedRecord{Status: rec.Status, Path: rec.Path, FetchedAt: rec.FetchedAt, Body: rec.Body})
	if err == nil {
		_, err = e.kv.Put(ctx, key, b)
	}
	if err != nil {
		e.log.Warn("record cache write failed", "key", key, "err", err)
	}
}

// saw records a version or event type of key's record. A failure costs at
// most a reconciled event the system didn't need, so it is logged, not
// returned.
func (e *Enricher) saw(ctx context.Context, key, version, eventType string) {
	if e.cfg.Versions == nil {
		return
	}
	if err := e.cfg.Versions.Saw(ctx, key, version, eventType); err != nil {
		e.log.Warn("recording the record's version failed; the reconciler may publish it again", "key", key, "err", err)
	}
}

// Key is the KV key of a record: "<source>.<resource>.<id>", with IDs outside
// the key alphabet base64url-encoded (stream.IDToken). The source is part of
// it: two Spectora companies' records may share an ID.
func Key(source, resource, id string) string {
	if source == "" {
		source = "default"
	}
	return source + "." + resource + "." + stream.IDToken(id)
}

// BucketConfig is the KV bucket caching records for ttl.
func BucketConfig(ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      stream.RecordBucket,
		Description: "Spectora records fetched by the enricher, shared by every group",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}
