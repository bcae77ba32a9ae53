// Package gateway is the HTTP ingest service: a Fiber app that verifies Svix
// webhooks from Spectora, routes each to a subject spectora.<resource>.<action>
// and answers 2xx only once JetStream has stored it.
//
// Nothing unauthenticated costs real resources: a request is checked in
// order of cost, and its body is read only once its signature headers could
// be genuine (present, well-formed, a fresh timestamp, a plausible number of
// signatures), within a memory budget shared by every request in flight.
// Refused requests are limited per client address; the rate limit of
// verified webhooks is per source and only verified webhooks spend it.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/contrib/otelfiber/v2"
	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"

	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	"github.com/spectora-stream/spectora-stream/stream"
)

// EnvelopeOverhead bounds what the protobuf envelope and the NATS headers add
// to a body: the body limit plus this must fit the server's max payload.
const EnvelopeOverhead = 8 << 10

// Config configures the gateway. Zero values take the documented defaults;
// nil Logger, Metrics and TracerProvider turn logs, metrics and tracing off.
type Config struct {
	// Secrets verify webhooks posted to /webhooks/spectora
	// (SPECTORA_WEBHOOK_SECRET): whsec_ secrets and whpk_ public keys. Required.
	Secrets []string
	// Sources are named sources served at /webhooks/spectora/{name}, each with
	// its own secrets (SPECTORA_WEBHOOK_SOURCES).
	Sources map[string][]string
	// Fields are the body paths of the event type and record ID.
	Fields Fields
	// BodyLimit is the largest accepted body in bytes (HTTP_BODY_LIMIT);
	// default 1,000,000. Svix payloads are at most about 350 KB.
	BodyLimit int
	// MaxPayload is the NATS server's largest message (nats.Conn.MaxPayload);
	// BodyLimit plus EnvelopeOverhead must fit it. Default 1 MiB, NATS's own.
	MaxPayload int64
	// MaxInflightBytes bounds the memory all bodies being read or verified
	// may use together (HTTP_MAX_INFLIGHT_BYTES); past it, 503. Default 32 MiB.
	MaxInflightBytes int64
	// PublishTimeout bounds the wait for JetStream's PubAck (PUBLISH_TIMEOUT);
	// default 5 s, well under Svix's 15 s.
	PublishTimeout time.Duration
	// RetryAfter is the Retry-After sent with 503 (RETRY_AFTER); default 5 s.
	RetryAfter time.Duration
	// RateLimit is the verified webhooks per second allowed per source
	// (RATE_LIMIT); 0 disables the limit.
	RateLimit float64
	// RateBurst is the burst above RateLimit (RATE_BURST); default 2×RateLimit.
	RateBurst int
	// RefusedRateLimit is the refused requests per second allowed per client
	// address (REFUSED_RATE_LIMIT) before it is answered 429 without further
	// work; 0 disables. Default 10.
	RefusedRateLimit float64
	// RefusedRateBurst is its burst (REFUSED_RATE_BURST); default 50.
	RefusedRateBurst int
	// TrustedProxies are load balancers (IPs or CIDRs, TRUSTED_PROXIES) whose
	// X-Forwarded-For names the client address.
	TrustedProxies []string
	// Stream is the stream every publish must land in; default SPECTORA.
	Stream string
	// ReadTimeout bounds reading one whole request, headers and body;
	// WriteTimeout and IdleTimeout are the HTTP server's other timeouts.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// Metrics counts requests by outcome, verification failures and publish
	// latency; nil records nothing.
	Metrics *Metrics
	// TracerProvider traces requests, verification and publishes; nil turns
	// tracing off. Propagator writes trace context into NATS headers; default
	// W3C trace context and baggage.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
}

func (c *Config) setDefaults() {
	if c.Fields.Type == nil {
		c.Fields.Type = DefaultFields().Type
	}
	if c.Fields.ID == nil {
		c.Fields.ID = DefaultFields().ID
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = 1_000_000
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 1 << 20
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = 32 << 20
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.RateLimit > 0 && c.RateBurst == 0 {
		c.RateBurst = max(1, int(math.Ceil(2*c.RateLimit)))
	}
	if c.RefusedRateLimit > 0 && c.RefusedRateBurst == 0 {
		c.RefusedRateBurst = 50
	}
	if c.Stream == "" {
		c.Stream = stream.Raw
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = c.PublishTimeout + 5*time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 90 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Propagator == nil {
		c.Propagator = telemetry.Propagator()
	}
}

func (c *Config) validate() error {
	switch {
	case c.BodyLimit < 1024:
		return fmt.Errorf("%w: HTTP_BODY_LIMIT %d: want at least 1024 bytes", ErrBadConfig, c.BodyLimit)
	case int64(c.BodyLimit)+EnvelopeOverhead > c.MaxPayload:
		return fmt.Errorf("%w: HTTP_BODY_LIMIT %d plus up to %d bytes of envelope exceeds the NATS server's max_payload %d: lower HTTP_BODY_LIMIT to at most %d or raise max_payload",
			ErrBadConfig, c.BodyLimit, EnvelopeOverhead, c.MaxPayload, c.MaxPayload-EnvelopeOverhead)
	case c.MaxInflightBytes < int64(c.BodyLimit):
		return fmt.Errorf("%w: HTTP_MAX_INFLIGHT_BYTES %d: want at least HTTP_BODY_LIMIT (%d)", ErrBadConfig, c.MaxInflightBytes, c.BodyLimit)
	case c.PublishTimeout < 0 || c.PublishTimeout > 14*time.Second:
		return fmt.Errorf("%w: PUBLISH_TIMEOUT %s: want more than 0 and under Svix's 15s", ErrBadConfig, c.PublishTimeout)
	case c.RetryAfter < time.Second:
		return fmt.Errorf("%w: RETRY_AFTER %s: want at least 1s", ErrBadConfig, c.RetryAfter)
	case c.RateLimit < 0:
		return fmt.Errorf("%w: RATE_LIMIT %g: must not be negative (0 is no limit)", ErrBadConfig, c.RateLimit)
	case c.RateBurst < 0:
		return fmt.Errorf("%w: RATE_BURST %d: must not be negative", ErrBadConfig, c.RateBurst)
	case c.RefusedRateLimit < 0:
		return fmt.Errorf("%w: REFUSED_RATE_LIMIT %g: must not be negative (0 is no limit)", ErrBadConfig, c.RefusedRateLimit)
	case c.RefusedRateBurst < 0:
		return fmt.Errorf("%w: REFUSED_RATE_BURST %d: must not be negative", ErrBadConfig, c.RefusedRateBurst)
	case len(c.Fields.Type) == 0 || len(c.Fields.ID) == 0:
		return fmt.Errorf("%w: SPECTORA_TYPE_FIELDS and SPECTORA_ID_FIELDS need at least one path", ErrBadConfig)
	}
	if _, err := parseTrustedProxies(c.TrustedProxies); err != nil {
		return fmt.Errorf("%w: TRUSTED_PROXIES: %v", ErrBadConfig, err)
	}
	return nil
}

// Validate fills defaults and checks every setting, secrets included, without
// touching the network, so a command can fail before it starts NATS.
func (c Config) Validate() error {
	c.setDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	_, err := c.sources()
	return err
}

// source is one webhook endpoint: its name, the keys that verify it and its
// rate limit.
type source struct {
	name     string
	verifier *Verifier
	limiter  *rate.Limiter
}

// sources builds a verifier per source: DefaultSource from Secrets, and each
// named source from its own secrets.
func (c Config) sources() (map[string]*source, error) {
	v, err := NewVerifier("SPECTORA_WEBHOOK_SECRET", c.Secrets)
	if err != nil {
		return nil, err
	}
	out := map[string]*source{DefaultSource: {name: DefaultSource, verifier: v}}
	for name, secrets := range c.Sources {
		v, err := NewVerifier(fmt.Sprintf("SPECTORA_WEBHOOK_SOURCES source %q", name), secrets)
		if err != nil {
			return nil, err
		}
		out[name] = &source{name: name, verifier: v}
	}
	if c.RateLimit > 0 {
		for _, s := range out {
			s.limiter = rate.NewLimiter(rate.Limit(c.RateLimit), c.RateBurst)
		}
	}
	return out, nil
}

// Publisher is the part of jetstream.JetStream the gateway uses.
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Health tells the gateway whether NATS is usable.
type Health interface {
	// Connected is a cheap check, made on every request: false answers 503 at
	// once instead of waiting for a PubAck that cannot come.
	Connected() bool
}

// Gateway is the webhook ingest service.
type Gateway struct {
	cfg      Config
	app      *fiber.App
	js       Publisher
	health   Health
	sources  map[string]*source
	refusals *refusals
	proxies  trustedProxies
	budget   *budget
	metrics  *Metrics
	log      *slog.Logger
	tracer   trace.Tracer
	// traced is false with no TracerProvider: then no span is started, so
	// the attributes and options a no-op span would discard are never built.
	traced bool
	// expectStream and stallWait are the publish's fixed header and option,
	// built once.
	expectStream []string
	stallWait    jetstream.PublishOpt
}

// New validates cfg and builds the gateway; it serves nothing until Serve.
func New(cfg Config, js Publisher, health Health) (*Gateway, error) {
	if js == nil || health == nil {
		return nil, fmt.Errorf("%w: gateway.New needs a publisher and a health check", ErrBadConfig)
	}
	traced := cfg.TracerProvider != nil
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sources, err := cfg.sources()
	if err != nil {
		return nil, err
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	g := &Gateway{cfg: cfg, js: js, health: health, log: cfg.Logger.With("component", "gateway"), sources: sources,
		tracer: tp.Tracer(telemetry.ScopeName), traced: traced, metrics: cfg.Metrics, budget: newBudget(cfg.MaxInflightBytes)}
	g.proxies, _ = parseTrustedProxies(cfg.TrustedProxies) // validated above
	g.expectStream = []string{cfg.Stream}
	g.stallWait = jetstream.WithStallWait(cfg.PublishTimeout)
	if cfg.RefusedRateLimit > 0 {
		g.refusals = newRefusals(cfg.RefusedRateLimit, cfg.RefusedRateBurst)
	}
	g.app = fiber.New(fiber.Config{
		AppName:      "spectora-stream gateway",
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		// Hand the body over as a stream after the headers, so a request is
		// refused before its body is read; the limit is enforced while reading.
		StreamRequestBody: true,
		BodyLimit:         cfg.BodyLimit,
		// fasthttp would otherwise read a multipart body, to memory or temp
		// files, before any handler runs.
		DisablePreParseMultipartForm: true,
		DisableStartupMessage:        true,
		ErrorHandler:                 g.handleError,
	})
	// The HTTP server span of every webhook request. With tracing off the
	// middleware is left out: even with a no-op provider it costs about a
	// third of the refused-request rate.
	if traced {
		g.app.Use(otelfiber.Middleware(
			otelfiber.WithTracerProvider(cfg.TracerProvider),
			otelfiber.WithPropagators(cfg.Propagator),
		))
	}
	// The webhook port serves webhooks only; metrics and probes are on the
	// ops address.
	g.app.Post("/webhooks/spectora", g.handleWebhook)
	g.app.Post("/webhooks/spectora/:source", g.handleWebhook)
	return g, nil
}

// App is the Fiber app, for tests and embedding.
func (g *Gateway) App() *fiber.App { return g.app }

// Serve serves HTTP on ln until Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	return g.app.Listener(ln)
}

// Shutdown stops accepting connections and waits, until ctx ends, for in-flight
// requests to get their PubAck and answer. Call it before draining NATS.
func (g *Gateway) Shutdown(ctx context.Context) error {
	return g.app.ShutdownWithContext(ctx)
}

// Locals keys.
const (
	localSource = "source"
	localClient = "client"
)

// handleWebhook checks a request in order of cost: source, framing, the
// client's refusal budget, the signature headers, the body's size and the
// memory budget; only then reads and verifies the body, applies the source's
// rate limit, and publishes.
func (g *Gateway) handleWebhook(c *fiber.Ctx) error {
	received := time.Now()
	g.metrics.inflightAdd(1)
	defer g.metrics.inflightAdd(-1)
	req := c.Request()
	client := g.proxies.clientAddr(c.Context().RemoteIP(), req.Header.Peek(fiber.HeaderXForwardedFor))
	c.Locals(localClient, client)
	if g.refusals != nil && g.refusals.exhausted(client) {
		return ErrRefusedTooOften
	}
	src := g.sources[DefaultSource]
	if p := c.Params("source"); p != "" {
		// Only a lookup: Fiber's params point into a reused buffer, so the
		// name used from here on is the source's own string.
		named, ok := g.sources[p]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownSource, sanitizeForLog(p))
		}
		src = named
	}
	c.Locals(localSource, src.name)
	if err := checkFraming(&req.Header); err != nil {
		return err
	}
	ctx := c.UserContext() // carries the HTTP server span
	signed, err := g.checkHeaders(ctx, req, src)
	if err != nil {
		return err
	}
	cl := int64(req.Header.ContentLength())
	if cl > int64(g.cfg.BodyLimit) {
		return fmt.Errorf("%w: Content-Length %d over HTTP_BODY_LIMIT %d", ErrTooLarge, cl, g.cfg.BodyLimit)
	}
	reserve := cl
	if reserve < 0 { // chunked: the limit is the most it can be
		reserve = int64(g.cfg.BodyLimit)
	}
	if err := g.budget.take(reserve); err != nil {
		return err
	}
	defer g.budget.give(reserve)
	buf := getBuf()
	defer putBuf(buf)
	if err := readBody(ctx, req, int64(g.cfg.BodyLimit), buf); err != nil {
		return err
	}
	c.Locals(localConsumed, true)
	body := buf.Bytes()
	if err := g.verifyBody(ctx, src, &signed, body); err != nil {
		return err
	}
	if src.limiter != nil && !src.limiter.Allow() {
		return ErrRateLimited
	}
	eventType, recordID := g.cfg.Fields.Extract(body)
	in := Inbound{
		ID:          signed.Headers.ID,
		Type:        eventType,
		RecordID:    recordID,
		Source:      src.name,
		Route:       stream.RouteFor(eventType),
		SignedAt:    signed.At,
		ReceivedAt:  received,
		ContentType: string(req.Header.ContentType()),
		Body:        body,
	}
	// Message copies the body into the NATS message's own bytes, so the
	// pooled buffer may be reused once the handler returns.
	msg, err := Message(in)
	if err != nil {
		return err
	}
	if size := int64(len(msg.Data) + headerSize(msg)); size > g.cfg.MaxPayload {
		return fmt.Errorf("%w: message of %d bytes over the NATS max_payload %d", ErrTooLarge, size, g.cfg.MaxPayload)
	}
	ack, err := g.publish(ctx, msg, &in)
	if err != nil {
		return err
	}
	outcome := outcomeAccepted
	switch {
	case ack.Duplicate:
		outcome = outcomeDuplicate
	case in.Route == stream.Unrouted:
		outcome = outcomeUnrouted
		g.log.WarnContext(ctx, "stored webhook whose event type could not be read", "subject", in.Route.Subject(), "id", in.ID, "seq", ack.Sequence, "source", src.name)
	}
	g.metrics.request(outcome, src.name)
	g.metrics.stored(src.name)
	if g.log.Enabled(ctx, slog.LevelDebug) {
		g.log.DebugContext(ctx, "webhook stored", "id", in.ID, "type", in.Type, "subject", msg.Subject, "seq", ack.Sequence, "duplicate", ack.Duplicate, "source", src.name)
	}
	c.Status(fiber.StatusOK).Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	var b [256]byte
	c.Response().AppendBody(appendAccepted(b[:0], ack, msg.Subject, in.ID))
	return nil
}

// appendAccepted appends the 200 answer, where the event was stored, as
// encoding/json would write the accepted struct, without reflection.
func appendAccepted(b []byte, ack *jetstream.PubAck, subject, id string) []byte {
	b = append(b, `{"stream":`...)
	b = appendJSONString(b, ack.Stream)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, ack.Sequence, 10)
	b = append(b, `,"duplicate":`...)
	b = strconv.AppendBool(b, ack.Duplicate)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, subject)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, id)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML-safe). s is ASCII here: a subject, a stream name, a
// message ID checked to be printable ASCII.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// headerSize is how many bytes msg's headers take on the wire, roughly.
func headerSize(msg *nats.Msg) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range msg.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// checkHeaders reads and checks the signature headers, in a span of its own.
func (g *Gateway) checkHeaders(ctx context.Context, req *fasthttp.Request, src *source) (Signed, error) {
	var span trace.Span
	if g.traced {
		_, span = g.tracer.Start(ctx, "verify headers", trace.WithAttributes(telemetry.AttrSource.String(src.name)))
	}
	hdrs, err := ReadSignedHeaders(func(name string) string { return string(req.Header.Peek(name)) })
	var signed Signed
	if err == nil {
		signed, err = src.verifier.Check(hdrs)
	}
	if span != nil {
		span.SetAttributes(telemetry.AttrSvixID.String(hdrs.ID))
		telemetry.End(span, err)
	}
	return signed, err
}

// verifyBody checks the signature over the raw body as received (never a
// re-encoded or decompressed form), in a span of its own.
func (g *Gateway) verifyBody(ctx context.Context, src *source, signed *Signed, body []byte) error {
	var span trace.Span
	if g.traced {
		_, span = g.tracer.Start(ctx, "verify webhook", trace.WithAttributes(telemetry.AttrSource.String(src.name),
			telemetry.AttrSvixID.String(signed.Headers.ID)))
	}
	err := src.verifier.VerifyBody(signed, body)
	if span != nil {
		telemetry.End(span, err)
	}
	return err
}

// publish sends msg asynchronously and waits for its own PubAck, so concurrent
// requests share the connection's pipeline instead of queueing behind each
// other's round trips. A PRODUCER span covers it, and its context rides in
// the message headers.
func (g *Gateway) publish(ctx context.Context, msg *nats.Msg, in *Inbound) (ack *jetstream.PubAck, err error) {
	if g.traced {
		var span trace.Span
		ctx, span = telemetry.StartPublish(ctx, g.tracer, g.cfg.Propagator, msg,
			semconv.MessagingMessageID(in.ID),
			telemetry.AttrEventType.String(in.Type),
			telemetry.AttrRecordID.String(in.RecordID),
			telemetry.AttrSource.String(in.Source))
		defer func() {
			if ack != nil {
				span.SetAttributes(telemetry.AttrStream.String(ack.Stream), telemetry.AttrStreamSequence.Int64(int64(ack.Sequence)),
					attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
			}
			telemetry.End(span, err)
		}()
	}
	if !g.health.Connected() {
		return nil, fmt.Errorf("%w: not connected to NATS", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	defer func() { g.metrics.published(time.Since(start)) }()
	// Message set Nats-Msg-Id (the svix-id); the expected stream makes a
	// misconfigured server refuse the message rather than store it elsewhere.
	msg.Header[stream.HeaderExpectedStream] = g.expectStream
	fut, err := g.js.PublishMsgAsync(msg, g.stallWait)
	if err != nil {
		return nil, publishError(msg.Subject, err)
	}
	select {
	case ack := <-fut.Ok():
		return ack, nil
	case err := <-fut.Err():
		if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			return nil, fmt.Errorf("%w: publish %s: %v", ErrPublishTimeout, msg.Subject, err)
		}
		return nil, publishError(msg.Subject, err)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: publish %s: no PubAck within %s", ErrPublishTimeout, msg.Subject, g.cfg.PublishTimeout)
	}
}

// jsErrStoreFailed is JetStream's error code for a message the stream would
// not store (JSStreamStoreFailedF), limits included.
const jsErrStoreFailed = 10077

// publishError translates a failed publish into the gateway's terms.
func publishError(subject string, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: publish %s: %v", ErrTooLarge, subject, err)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrStoreFailed && strings.HasPrefix(apiErr.Description, "maximum "):
		// "maximum bytes exceeded", "maximum messages exceeded": a full
		// stream with discard-new; any other store failure is unavailable.
		return fmt.Errorf("%w: publish %s: %v", ErrStreamFull, subject, err)
	}
	return fmt.Errorf("%w: publish %s: %v", ErrUnavailable, subject, err)
}

// sanitizeForLog keeps request-controlled text short and printable.
func sanitizeForLog(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return stream.HeaderValue(s)
}

// Retry-After for a refused client; exposed to the error handler.
func (g *Gateway) refusedRetryAfter() time.Duration {
	if g.refusals == nil {
		return time.Second
	}
	return g.refusals.retryAfter()
}
