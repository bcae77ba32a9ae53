package consumers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// Fetcher fetches one record from Spectora's API (APIClient in production).
type Fetcher interface {
	Fetch(ctx context.Context, resource, id string) (Record, error)
}

// Enricher finds the full record behind an event: from the shared key-value
// cache when a copy fetched after the event exists, otherwise from the API.
// Concurrent look-ups of one record in a process share one fetch, so however
// many groups handle an event, the API is called once.
type Enricher struct {
	api     Fetcher
	kv      jetstream.KeyValue
	flight  singleflight.Group
	metrics *Metrics
	tracing Tracing
	tracer  trace.Tracer
	log     *slog.Logger
}

// NewEnricher builds an enricher. api nil means no API token is configured:
// records are then not fetched (RECORD_STATUS_NOT_FETCHED). kv is the record
// bucket (natsx.RecordBucket), shared by every group and instance. tracing
// traces cache look-ups and the enricher group's republishes.
func NewEnricher(api Fetcher, kv jetstream.KeyValue, metrics *Metrics, tracing Tracing, logger *slog.Logger) *Enricher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Enricher{api: api, kv: kv, metrics: metrics, tracing: tracing, tracer: tracing.tracer(), log: logger.With("component", "enricher")}
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
func (e *Enricher) Record(ctx context.Context, ev *spectorav1.WebhookEvent) (Record, error) {
	notFetched := Record{Status: spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED}
	if e.api == nil || ev.GetRecordId() == "" || ev.GetAction() == "deleted" || ev.GetResource() == "unrouted" {
		return notFetched, nil
	}
	key := recordKey(ev.GetResource(), ev.GetRecordId())
	eventTime := ev.GetReceivedAt().AsTime()
	for attempt := 0; ; attempt++ {
		// Concurrent look-ups of one record share one cache read and, on a
		// miss, one fetch.
		v, err, shared := e.flight.Do(key, func() (any, error) {
			if rec, ok := e.cachedSpan(ctx, key, eventTime); ok {
				e.metrics.cache.WithLabelValues("hit").Inc()
				return rec, nil
			}
			rec, err := e.api.Fetch(ctx, ev.GetResource(), ev.GetRecordId())
			if err != nil {
				return Record{}, err
			}
			e.store(ctx, key, rec)
			return rec, nil
		})
		if err != nil {
			return Record{}, err
		}
		rec := v.(Record)
		if shared && attempt < 2 && rec.Status != spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED && rec.FetchedAt.Before(eventTime) {
			// Joined a look-up whose record predates this event (another
			// caller's cache hit, or a fetch that left before this event was
			// received): look again; a new flight starts now.
			continue
		}
		if shared {
			e.metrics.cache.WithLabelValues("coalesced").Inc()
		}
		return rec, nil
	}
}

// cachedSpan is cached in a span of its own.
func (e *Enricher) cachedSpan(ctx context.Context, key string, eventTime time.Time) (Record, bool) {
	ctx, span := e.tracer.Start(ctx, "record cache get", trace.WithAttributes(
		attribute.String("spectora.cache.bucket", e.bucketName()), attribute.String("spectora.cache.key", key)))
	defer span.End()
	rec, ok := e.cached(ctx, key, eventTime)
	span.SetAttributes(attribute.Bool("spectora.cache.hit", ok))
	return rec, ok
}

func (e *Enricher) bucketName() string {
	if e.kv == nil {
		return ""
	}
	return e.kv.Bucket()
}

// cached returns the cached record if it was fetched at or after eventTime,
// i.e. it already reflects the change the event announces.
func (e *Enricher) cached(ctx context.Context, key string, eventTime time.Time) (Record, bool) {
	if e.kv == nil {
		return Record{}, false
	}
	entry, err := e.kv.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			e.log.Warn("record cache read failed; fetching", "key", key, "err", err)
		}
		e.metrics.cache.WithLabelValues("miss").Inc()
		return Record{}, false
	}
	var c cachedRecord
	if err := json.Unmarshal(entry.Value(), &c); err != nil {
		e.metrics.cache.WithLabelValues("miss").Inc()
		return Record{}, false
	}
	if c.FetchedAt.Before(eventTime) {
		e.metrics.cache.WithLabelValues("stale").Inc()
		return Record{}, false
	}
	return Record{Status: c.Status, Body: c.Body, Path: c.Path, FetchedAt: c.FetchedAt}, true
}

func (e *Enricher) store(ctx context.Context, key string, rec Record) {
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

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

// recordKey is the KV key of a record: "<resource>.<id>", with IDs outside the
// key alphabet base64url-encoded.
func recordKey(resource, id string) string {
	if !plainKey.MatchString(id) {
		id = "b64_" + base64.RawURLEncoding.EncodeToString([]byte(id))
	}
	return resource + "." + id
}

// RecordBucketConfig is the KV bucket caching records for ttl.
func RecordBucketConfig(bucket string, ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "Spectora records fetched by the enricher, shared by every group",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// EnsureRecordBucket creates or updates the record cache bucket.
func EnsureRecordBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("record cache bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}
