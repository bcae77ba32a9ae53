package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Action is the action of the events the reconciler publishes:
// spectora.<resource>.reconciled.
const Action = "reconciled"

// Lister lists one source's records; *spectora.Client is one, and shares its
// rate limit with the enricher's fetches when both use the same client.
type Lister interface {
	Lists(resource string) bool
	List(ctx context.Context, resource string, since time.Time, page func([]spectora.Listed) error) error
}

// Config configures a Reconciler. Sources, Versions, Checkpoints and
// Publisher are required; nil Logger, Metrics and TracerProvider turn them
// off.
type Config struct {
	// Sources maps a source (Spectora company, as webhooks name it) to the
	// API client listing its records.
	Sources map[string]Lister
	// Resources are the resources reconciled, where a source's client has a
	// list path for them; default inspection, agent and client.
	Resources []string
	// Versions is what the enricher saw.
	Versions *enrich.Versions
	// Checkpoints holds one checkpoint per source and resource
	// (CheckpointBucketConfig).
	Checkpoints jetstream.KeyValue
	// Publisher stores the events in the raw stream.
	Publisher enrich.Publisher
	// Settle leaves changes younger than this to the next run, so a webhook
	// on its way (Svix's first retries, a backlog) is not overtaken; default
	// 5m.
	Settle time.Duration
	// Lookback is how far back a source and resource without a checkpoint
	// is read; default 24h.
	Lookback time.Duration
	// Rules derive missed events; none by default.
	Rules []Rule

	Logger         *slog.Logger
	Metrics        *Metrics
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Reconciler compares Spectora's lists of changed records with what the
// system saw and publishes what it missed.
type Reconciler struct {
	cfg    Config
	tracer trace.Tracer
	log    *slog.Logger
}

// New validates cfg.
func New(cfg Config) (*Reconciler, error) {
	switch {
	case len(cfg.Sources) == 0:
		return nil, errors.New("reconciler: no source has an API client")
	case cfg.Versions == nil || cfg.Checkpoints == nil || cfg.Publisher == nil:
		return nil, errors.New("reconciler: Versions, Checkpoints and Publisher are required")
	case cfg.Settle < 0 || cfg.Lookback < 0:
		return nil, errors.New("reconciler: Settle and Lookback must not be negative")
	}
	if cfg.Settle == 0 {
		cfg.Settle = 5 * time.Minute
	}
	if cfg.Lookback == 0 {
		cfg.Lookback = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Propagator == nil {
		cfg.Propagator = telemetry.Propagator()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	rc := &Reconciler{cfg: cfg, tracer: tp.Tracer(telemetry.ScopeName), log: cfg.Logger.With("component", "reconciler")}
	for source, l := range cfg.Sources {
		for _, resource := range rc.resources(l, nil) {
			cfg.Metrics.init(source, resource)
		}
	}
	return rc, nil
}

// Resources are the resources reconciled by default.
func (rc *Reconciler) Resources() []string {
	if len(rc.cfg.Resources) == 0 {
		return []string{"inspection", "agent", "client"}
	}
	return rc.cfg.Resources
}

// CheckpointBucketConfig is the bucket of checkpoints.
func CheckpointBucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      stream.ReconcileBucket,
		Description: "Reconciler checkpoints: per source and resource, the time its records are reconciled through",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// CheckpointKey is the key of source's resource's checkpoint.
func CheckpointKey(source, resource string) string {
	if source == "" {
		source = "default"
	}
	return source + "." + resource
}

// Checkpoint is what a pass over one source and resource left behind.
type Checkpoint struct {
	// Through: every change made before it has been reconciled.
	Through time.Time `json:"through"`
	// RanAt is when the pass finished; Listed and Emitted are its counts.
	RanAt   time.Time `json:"ran_at"`
	Listed  int       `json:"listed"`
	Emitted int       `json:"emitted"`
	// Held counts passes in a row that kept Through because records changed
	// while they listed.
	Held int `json:"held,omitempty"`
}

// MaxHeld is how many passes in a row may keep a checkpoint because records
// changed during their listing.
const MaxHeld = 3

// Options narrow one run.
type Options struct {
	// Since reads changes from this time instead of each checkpoint.
	Since time.Time
	// Sources and Resources, when not empty, limit the run to these.
	Sources, Resources []string
	// DryRun publishes nothing and moves no checkpoint; each event the run
	// would publish is written to Out as one line.
	DryRun bool
	Out    io.Writer
}

// Result counts one run.
type Result struct {
	// Passes is the number of source and resource pairs read.
	Passes int
	// Listed records; Seen: versions the system already had; Emitted:
	// events stored (or, dry, that would be); Duplicates: events the stream
	// already held (an earlier or concurrent run stored them); Rules: events
	// rules derived (also counted in Emitted).
	Listed, Seen, Emitted, Duplicates, Rules int
}

func (r Result) String() string {
	return fmt.Sprintf("passes %d, listed %d, already seen %d, emitted %d (rules %d), already stored %d",
		r.Passes, r.Listed, r.Seen, r.Emitted, r.Rules, r.Duplicates)
}

// Run reconciles every selected source and resource once. A failing pass
// doesn't stop the others; their errors are joined. Its checkpoint stays
// where it was, so the next run reads those changes again.
func (rc *Reconciler) Run(ctx context.Context, opts Options) (Result, error) {
	var total Result
	var errs []error
	sources := slices.Sorted(maps.Keys(rc.cfg.Sources))
	for _, want := range opts.Sources {
		if _, ok := rc.cfg.Sources[want]; !ok {
			return total, fmt.Errorf("source %q has no API client (known: %v)", want, sources)
		}
	}
	for _, want := range opts.Resources {
		if !slices.Contains(rc.Resources(), want) {
			return total, fmt.Errorf("resource %q is not reconciled (known: %v)", want, rc.Resources())
		}
	}
	for _, source := range sources {
		if len(opts.Sources) > 0 && !slices.Contains(opts.Sources, source) {
			continue
		}
		lister := rc.cfg.Sources[source]
		for _, resource := range rc.resources(lister, opts.Resources) {
			res, err := rc.pass(ctx, source, resource, lister, opts)
			rc.cfg.Metrics.pass(source, resource, err)
			total.Passes++
			total.Listed += res.Listed
			total.Seen += res.Seen
			total.Emitted += res.Emitted
			total.Duplicates += res.Duplicates
			total.Rules += res.Rules
			if err != nil {
				errs = append(errs, fmt.Errorf("source %s, %s: %w", source, resource, err))
				if ctx.Err() != nil {
					return total, errors.Join(errs...)
				}
			}
		}
	}
	if len(errs) == 0 && !opts.DryRun {
		rc.cfg.Metrics.succeeded(rc.cfg.Now())
	}
	return total, errors.Join(errs...)
}

func (rc *Reconciler) resources(l Lister, only []string) []string {
	var out []string
	for _, res := range rc.Resources() {
		if l.Lists(res) && (len(only) == 0 || slices.Contains(only, res)) {
			out = append(out, res)
		}
	}
	return out
}

// Loop runs a reconciliation every interval until ctx ends, the first one at
// once. Failures are logged; the next run tries again.
func (rc *Reconciler) Loop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := rc.Run(ctx, Options{})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			rc.log.Error("reconciliation failed; the next run reads the same changes again", "err", err, "result", res.String())
		case res.Emitted > 0:
			rc.log.Warn("reconciliation recovered changes no webhook announced", "emitted", res.Emitted, "rules", res.Rules, "listed", res.Listed)
		default:
			rc.log.Info("reconciliation found nothing missed", "listed", res.Listed, "seen", res.Seen)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pass reconciles one source's resource.
func (rc *Reconciler) pass(ctx context.Context, source, resource string, l Lister, opts Options) (res Result, err error) {
	ctx, span := rc.tracer.Start(ctx, "reconcile "+source+" "+resource, trace.WithAttributes(
		attribute.String("spectora.source", source), attribute.String("spectora.resource", resource)))
	defer func() {
		span.SetAttributes(attribute.Int("spectora.reconcile.listed", res.Listed), attribute.Int("spectora.reconcile.emitted", res.Emitted))
		telemetry.End(span, err)
	}()
	cpKey := CheckpointKey(source, resource)
	cp, err := rc.checkpoint(ctx, cpKey)
	if err != nil {
		return res, err
	}
	now := rc.cfg.Now()
	until := now.Add(-rc.cfg.Settle)
	since := opts.Since
	switch {
	case !since.IsZero():
	case !cp.Through.IsZero():
		since = cp.Through
	default:
		since = now.Add(-rc.cfg.Lookback)
	}
	if !since.Before(until) {
		return res, nil
	}
	rc.log.Debug("reconciling", "source", source, "resource", resource, "since", since, "until", until)
	changedMeanwhile := false
	err = l.List(ctx, resource, since, func(items []spectora.Listed) error {
		res.Listed += len(items)
		rc.cfg.Metrics.listedN(source, resource, len(items))
		for _, item := range items {
			version := rc.cfg.Versions.Of(item.Record.Body)
			if t, err := time.Parse(time.RFC3339Nano, version); err == nil && t.After(now) {
				// Changed while the list was read: with page offsets, a
				// record may have moved past another one, which then
				// wasn't listed. Read this window again next time.
				changedMeanwhile = true
			}
			if err := rc.item(ctx, source, resource, item, version, until, opts, &res); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || opts.DryRun {
		return res, err
	}
	// The checkpoint moves to until only when everything since it was read:
	// not after a --since later than it (the gap between would never be
	// read), and not when records changed during the listing, for at most
	// MaxHeld passes in a row (under constant change it would never move).
	hold := changedMeanwhile && cp.Held < MaxHeld
	switch {
	case hold:
		cp.Held++
		rc.log.Info("records changed during the listing: the next pass reads the same window again", "source", source, "resource", resource, "held", cp.Held)
	case until.After(cp.Through) && (opts.Since.IsZero() || cp.Through.IsZero() || !opts.Since.After(cp.Through)):
		cp.Through, cp.Held = until, 0
	}
	cp.RanAt, cp.Listed, cp.Emitted = rc.cfg.Now().UTC(), res.Listed, res.Emitted
	b, _ := json.Marshal(cp)
	if _, err := rc.cfg.Checkpoints.Put(ctx, cpKey, b); err != nil {
		return res, fmt.Errorf("checkpoint %s: %w (the next run reads these changes again)", cpKey, err)
	}
	return res, nil
}

func (rc *Reconciler) checkpoint(ctx context.Context, key string) (Checkpoint, error) {
	var cp Checkpoint
	entry, err := rc.cfg.Checkpoints.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return cp, nil
	}
	if err != nil {
		return cp, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	if err := json.Unmarshal(entry.Value(), &cp); err != nil {
		return cp, fmt.Errorf("checkpoint %s is unreadable (delete it to start from RECONCILE_LOOKBACK): %w", key, err)
	}
	return cp, nil
}

// item compares one listed record with what the system saw.
func (rc *Reconciler) item(ctx context.Context, source, resource string, item spectora.Listed, version string, until time.Time, opts Options, res *Result) error {
	if t, err := time.Parse(time.RFC3339Nano, version); err == nil && t.After(until) {
		return nil // too recent: its webhook may be on its way; the next run reads it
	}
	key := enrich.Key(source, resource, item.ID)
	seen, _, err := rc.cfg.Versions.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("version of %s: %w", key, err)
	}
	if seen.Covers(version) {
		// Seen: its state arrived by webhook (or an earlier run), so no
		// rule applies either: a rule derives an event only from a change
		// nobody announced.
		res.Seen++
		return nil
	}
	route := stream.Route{Resource: resource, Action: Action}
	if _, err := rc.emit(ctx, source, route, MessageID(source, resource, item.ID, version), item, version, "reconciled", opts, res); err != nil {
		return err
	}
	if !opts.DryRun {
		rc.saw(ctx, key, version, "")
	}
	for _, rule := range rc.cfg.Rules {
		if rule.Route().Resource != resource || slices.Contains(seen.Types, rule.EventType) || !rule.Matches(item.Record.Body) {
			continue
		}
		id := MessageID(source, resource, item.ID, "rule."+rule.EventType)
		stored, err := rc.emit(ctx, source, rule.Route(), id, item, version, "rule", opts, res)
		if err != nil {
			return err
		}
		if stored {
			res.Rules++
		}
		if !opts.DryRun {
			// The event is in the stream (stored now or before): the
			// system has seen it.
			rc.saw(ctx, key, "", rule.EventType)
		}
	}
	return nil
}

// saw records what the reconciler stored, so the next run skips it even
// before the enricher has processed it. A failure costs at most an event the
// stream drops as a duplicate (within its window) on the next run.
func (rc *Reconciler) saw(ctx context.Context, key, version, eventType string) {
	if err := rc.cfg.Versions.Saw(ctx, key, version, eventType); err != nil {
		rc.log.Warn("recording what was published failed", "key", key, "err", err)
	}
}

// MessageID is the Nats-Msg-Id of a reconciled event: one per source,
// resource, record and version (or rule), so every run and every instance
// publishing it is deduplicated by the stream.
func MessageID(source, resource, id, version string) string {
	if source == "" {
		source = "default"
	}
	return "reconcile:" + source + ":" + resource + ":" + id + ":" + version
}

// emit publishes one event and reports whether the stream stored it (false:
// it held it already); dry, it prints it instead.
func (rc *Reconciler) emit(ctx context.Context, source string, route stream.Route, id string, item spectora.Listed,
	version, kind string, opts Options, res *Result) (stored bool, err error) {
	eventType := route.Resource + "." + route.Action
	if opts.DryRun {
		res.Emitted++
		if opts.Out != nil {
			_, err := fmt.Fprintf(opts.Out, "would publish %s source=%s record=%s version=%s id=%s\n", route.Subject(), source, item.ID, version, id)
			return true, err
		}
		return true, nil
	}
	now := rc.cfg.Now().UTC()
	body, _ := json.Marshal(map[string]string{"type": eventType, "id": item.ID, "source": source, "version": version, "origin": stream.OriginReconcile})
	ev := &spectorav1.WebhookEvent{
		Id: id, Type: eventType, Resource: route.Resource, Action: route.Action, RecordId: item.ID, Source: source,
		Subject: route.Subject(), ReceivedAt: timestamppb.New(now), ContentType: "application/json", Body: body,
		Record: item.Record.Body, RecordListedAt: timestamppb.New(item.Record.FetchedAt), RecordVersion: version,
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return false, err
	}
	msg := nats.NewMsg(route.Subject())
	msg.Data = data
	msg.Header.Set(stream.HeaderContentType, stream.ContentTypeWebhookEvent)
	msg.Header.Set(stream.HeaderEventType, eventType)
	msg.Header.Set(stream.HeaderRecordID, stream.HeaderValue(item.ID))
	msg.Header.Set(stream.HeaderSource, source)
	msg.Header.Set(stream.HeaderOrigin, stream.OriginReconcile)
	ctx, span := telemetry.StartPublish(ctx, rc.tracer, rc.cfg.Propagator, msg, semconv.MessagingMessageID(id),
		telemetry.AttrEventType.String(eventType), telemetry.AttrRecordID.String(item.ID))
	defer func() { telemetry.End(span, err) }()
	ack, err := rc.cfg.Publisher.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(stream.Raw))
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	span.SetAttributes(telemetry.AttrStreamSequence.Int64(int64(ack.Sequence)), attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
	if ack.Duplicate {
		res.Duplicates++
		return false, nil
	}
	res.Emitted++
	rc.cfg.Metrics.emitted(source, route.Resource, kind)
	rc.log.Info("published a change no webhook announced", "subject", msg.Subject, "source", source, "record", item.ID, "version", version, "seq", ack.Sequence)
	return true, nil
}
