// Package gateway is the HTTP ingest service: a Fiber app that verifies Svix
// webhooks from Spectora, routes each to a subject spectora.<resource>.<action>
// and answers 2xx only once JetStream has stored it.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/gofiber/contrib/otelfiber/v2"
	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"

	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Config configures the gateway. Zero values take the documented defaults.
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
	// default 1 MiB. Svix payloads are at most about 350 KB.
	BodyLimit int
	// PublishTimeout bounds the wait for JetStream's PubAck (PUBLISH_TIMEOUT);
	// default 5 s, well under Svix's 15 s.
	PublishTimeout time.Duration
	// RetryAfter is the Retry-After sent with 503 (RETRY_AFTER); default 5 s.
	RetryAfter time.Duration
	// RateLimit is the sustained requests per second allowed (RATE_LIMIT);
	// 0 disables the limit.
	RateLimit float64
	// RateBurst is the burst above RateLimit (RATE_BURST); default 2×RateLimit.
	RateBurst int
	// Stream is the stream every publish must land in; default SPECTORA.
	Stream string
	// ReadTimeout, WriteTimeout and IdleTimeout are the HTTP server's timeouts.
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
		c.BodyLimit = 1 << 20
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
	case c.PublishTimeout < 0 || c.PublishTimeout > 14*time.Second:
		return fmt.Errorf("%w: PUBLISH_TIMEOUT %s: want more than 0 and under Svix's 15s", ErrBadConfig, c.PublishTimeout)
	case c.RetryAfter < time.Second:
		return fmt.Errorf("%w: RETRY_AFTER %s: want at least 1s", ErrBadConfig, c.RetryAfter)
	case c.RateLimit < 0:
		return fmt.Errorf("%w: RATE_LIMIT %g: must not be negative", ErrBadConfig, c.RateLimit)
	case c.RateBurst < 0:
		return fmt.Errorf("%w: RATE_BURST %d: must not be negative", ErrBadConfig, c.RateBurst)
	case len(c.Fields.Type) == 0 || len(c.Fields.ID) == 0:
		return fmt.Errorf("%w: SPECTORA_TYPE_FIELDS and SPECTORA_ID_FIELDS need at least one path", ErrBadConfig)
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

// source is one webhook endpoint: its name and the keys that verify it.
type source struct {
	name     string
	verifier *Verifier
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
	cfg     Config
	app     *fiber.App
	js      Publisher
	health  Health
	sources map[string]*source
	limiter *rate.Limiter
	metrics *Metrics
	log     *slog.Logger
	tracer  trace.Tracer
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
		tracer: tp.Tracer(telemetry.ScopeName), metrics: cfg.Metrics}
	if cfg.RateLimit > 0 {
		g.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
	}
	g.app = fiber.New(fiber.Config{
		AppName:               "spectora-stream gateway",
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		DisableStartupMessage: true,
		ErrorHandler:          g.handleError,
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

const localSource = "source"

// accepted is the 200 response body: where the event was stored.
type accepted struct {
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Subject   string `json:"subject"`
	ID        string `json:"id"`
}

func (g *Gateway) handleWebhook(c *fiber.Ctx) error {
	received := time.Now()
	g.metrics.inflightAdd(1)
	defer g.metrics.inflightAdd(-1)

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
	source := src.name
	c.Locals(localSource, source)
	if g.limiter != nil && !g.limiter.Allow() {
		return ErrRateLimited
	}
	ctx := c.UserContext() // carries the HTTP server span
	hdrs, signedAt, err := g.verify(ctx, c, src)
	if err != nil {
		return err
	}
	// Fiber reuses the body buffer once the handler returns, but nothing here
	// keeps it that long: Message marshals it into the NATS message's own
	// bytes, which is all an unacknowledged async publish holds on to.
	body := c.Request().Body()
	eventType, recordID := g.cfg.Fields.Extract(body)
	in := Inbound{
		ID:          hdrs.ID,
		Type:        eventType,
		RecordID:    recordID,
		Source:      source,
		Route:       stream.RouteFor(eventType),
		SignedAt:    signedAt,
		ReceivedAt:  received,
		ContentType: string(c.Request().Header.ContentType()),
		Body:        body,
	}
	msg, err := Message(in)
	if err != nil {
		return err
	}
	ack, err := g.publish(ctx, msg, in)
	if err != nil {
		return err
	}
	outcome := outcomeAccepted
	switch {
	case ack.Duplicate:
		outcome = outcomeDuplicate
	case in.Route == stream.Unrouted:
		outcome = outcomeUnrouted
		g.log.WarnContext(ctx, "stored webhook whose event type could not be read", "subject", in.Route.Subject(), "id", in.ID, "seq", ack.Sequence, "source", source)
	}
	g.metrics.request(outcome, source)
	g.log.DebugContext(ctx, "webhook stored", "id", in.ID, "type", in.Type, "subject", in.Route.Subject(), "seq", ack.Sequence, "duplicate", ack.Duplicate, "source", source)
	return c.Status(fiber.StatusOK).JSON(accepted{
		Stream:    ack.Stream,
		Sequence:  ack.Sequence,
		Duplicate: ack.Duplicate,
		Subject:   in.Route.Subject(),
		ID:        in.ID,
	})
}

// verify checks the signature headers of the raw body as received (never a
// re-encoded or decompressed form), in a span of its own.
func (g *Gateway) verify(ctx context.Context, c *fiber.Ctx, src *source) (SignedHeaders, time.Time, error) {
	_, span := g.tracer.Start(ctx, "verify webhook", trace.WithAttributes(telemetry.AttrSource.String(src.name)))
	hdrs, err := ReadSignedHeaders(func(name string) string { return string(c.Request().Header.Peek(name)) })
	if err != nil {
		telemetry.End(span, err)
		return hdrs, time.Time{}, err
	}
	span.SetAttributes(telemetry.AttrSvixID.String(hdrs.ID))
	signedAt, err := src.verifier.Verify(hdrs, c.Request().Body())
	telemetry.End(span, err)
	return hdrs, signedAt, err
}

// publish sends msg asynchronously and waits for its own PubAck, so concurrent
// requests share the connection's pipeline instead of queueing behind each
// other's round trips. A PRODUCER span covers it, and its context rides in
// the message headers.
func (g *Gateway) publish(ctx context.Context, msg *nats.Msg, in Inbound) (ack *jetstream.PubAck, err error) {
	ctx, span := telemetry.StartPublish(ctx, g.tracer, g.cfg.Propagator, msg,
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
	if !g.health.Connected() {
		return nil, fmt.Errorf("%w: not connected to NATS", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	defer func() { g.metrics.published(time.Since(start)) }()
	fut, err := g.js.PublishMsgAsync(msg,
		jetstream.WithMsgID(in.ID),
		jetstream.WithExpectStream(g.cfg.Stream),
		jetstream.WithStallWait(g.cfg.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("%w: publish %s: %v", ErrUnavailable, msg.Subject, err)
	}
	select {
	case ack := <-fut.Ok():
		return ack, nil
	case err := <-fut.Err():
		if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			return nil, fmt.Errorf("%w: publish %s: %v", ErrPublishTimeout, msg.Subject, err)
		}
		return nil, fmt.Errorf("%w: publish %s: %v", ErrUnavailable, msg.Subject, err)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: publish %s: no PubAck within %s", ErrPublishTimeout, msg.Subject, g.cfg.PublishTimeout)
	}
}

// errorBody is the JSON body of every error answer. Code is stable; Message is
// for humans and never contains a secret.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classification is how an error is answered.
type classification struct {
	status  int
	code    string
	outcome string
	// retryAfter asks the client to come back later.
	retryAfter bool
}

// classify maps an error to its answer. It is the one place that decides status
// codes; handlers only return errors.
func classify(err error) classification {
	switch {
	case errors.Is(err, ErrMissingHeaders):
		return classification{fiber.StatusUnauthorized, "missing_signature_headers", outcomeUnauthorize, false}
	case errors.Is(err, ErrMalformedHeaders):
		return classification{fiber.StatusUnauthorized, "malformed_signature_headers", outcomeUnauthorize, false}
	case errors.Is(err, ErrTimestampTooOld):
		return classification{fiber.StatusUnauthorized, "timestamp_too_old", outcomeUnauthorize, false}
	case errors.Is(err, ErrTimestampTooNew):
		return classification{fiber.StatusUnauthorized, "timestamp_too_new", outcomeUnauthorize, false}
	case errors.Is(err, ErrSignatureMismatch):
		return classification{fiber.StatusUnauthorized, "invalid_signature", outcomeUnauthorize, false}
	case errors.Is(err, ErrUnknownSource):
		return classification{fiber.StatusNotFound, "unknown_source", outcomeNotFound, false}
	case errors.Is(err, ErrRateLimited):
		return classification{fiber.StatusTooManyRequests, "rate_limited", outcomeRateLimited, true}
	case errors.Is(err, ErrPublishTimeout):
		return classification{fiber.StatusServiceUnavailable, "publish_timeout", outcomeUnavailable, true}
	case errors.Is(err, ErrUnavailable):
		return classification{fiber.StatusServiceUnavailable, "unavailable", outcomeUnavailable, true}
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusRequestEntityTooLarge:
			return classification{fe.Code, "body_too_large", outcomeTooLarge, false}
		case fiber.StatusNotFound:
			return classification{fe.Code, "not_found", outcomeNotFound, false}
		case fiber.StatusMethodNotAllowed:
			return classification{fe.Code, "method_not_allowed", outcomeNotFound, false}
		case fiber.StatusRequestTimeout:
			return classification{fe.Code, "request_timeout", outcomeError, false}
		}
		if fe.Code >= 400 && fe.Code < 500 {
			return classification{fe.Code, "bad_request", outcomeError, false}
		}
	}
	return classification{fiber.StatusInternalServerError, "internal", outcomeError, false}
}

func (g *Gateway) handleError(c *fiber.Ctx, err error) error {
	cl := classify(err)
	source, _ := c.Locals(localSource).(string)
	ctx := c.UserContext()
	msg := err.Error()
	switch cl.status {
	case fiber.StatusInternalServerError:
		g.log.ErrorContext(ctx, "webhook request failed", "err", err, "path", c.Path())
		msg = "internal error"
	case fiber.StatusServiceUnavailable:
		g.log.WarnContext(ctx, "webhook not stored; asked the sender to retry", "err", err, "source", source)
	case fiber.StatusUnauthorized:
		g.metrics.verifyFailed(cl.code)
		g.log.InfoContext(ctx, "webhook refused", "reason", cl.code, "source", source, "remote", c.IP())
	case fiber.StatusRequestEntityTooLarge:
		msg = fmt.Sprintf("body larger than HTTP_BODY_LIMIT (%d bytes)", g.cfg.BodyLimit)
	}
	// Only webhook endpoints count as requests; a scan of random paths does not.
	if cl.outcome != outcomeNotFound || source != "" || errors.Is(err, ErrUnknownSource) {
		g.metrics.request(cl.outcome, source)
	}
	if cl.retryAfter {
		wait := g.cfg.RetryAfter
		if cl.status == fiber.StatusTooManyRequests && g.limiter != nil {
			wait = time.Duration(math.Ceil(float64(time.Second) / float64(g.limiter.Limit())))
		}
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	}
	return c.Status(cl.status).JSON(errorBody{Error: errorDetail{Code: cl.code, Message: msg}})
}

// sanitizeForLog keeps request-controlled text short and printable.
func sanitizeForLog(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return stream.HeaderValue(s)
}
