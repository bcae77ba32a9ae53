package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/telemetry"
)

// Handler processes one message. Return nil when done, an error to have the
// message retried with backoff, or an error wrapping ErrPermanent to
// dead-letter it at once. ctx ends when the group stops hard.
type Handler func(ctx context.Context, m *Message) error

// Config describes a consumer group: a durable JetStream pull consumer whose
// instances share the work, while separate groups each see every event.
type Config struct {
	// Name is the group and durable consumer name: lowercase letters, digits,
	// "_" and "-". Required.
	Name string
	// Stream is the stream read: SPECTORA (default) or SPECTORA_ENRICHED.
	Stream string
	// Subjects filter the stream, e.g. "spectora.inspection.*"; default all.
	Subjects []string
	// Handler processes each message. Required.
	Handler Handler
	// Concurrency is how many messages one instance handles at once; default 4.
	Concurrency int
	// MaxDeliver is how many deliveries a message gets before it is
	// dead-lettered; default 5.
	MaxDeliver int
	// Backoff is the delay before redelivery after the 1st, 2nd, … failure;
	// the last entry repeats. Default 1s, 5s, 30s, 2m.
	Backoff []time.Duration
	// AckWait is how long the server waits for an answer before redelivering;
	// handlers running longer send InProgress every AckWait/3. Default 30s.
	AckWait time.Duration
	// Tracing traces each delivery as a CONSUMER span continuing the
	// producer's trace; the zero value records nothing.
	Tracing Tracing
}

var groupName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,47}$`)

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = natsx.RawStream
	}
	if len(c.Subjects) == 0 {
		if c.Stream == natsx.EnrichedStream {
			c.Subjects = []string{natsx.EnrichedSubjects}
		} else {
			c.Subjects = []string{natsx.RawSubjects}
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.Backoff == nil {
		c.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
}

func (c *Config) validate() error {
	switch {
	case !groupName.MatchString(c.Name):
		return fmt.Errorf("%w: name %q: want lowercase letters, digits, _ or -, at most 48", ErrInvalidGroup, c.Name)
	case c.Handler == nil:
		return fmt.Errorf("%w: %s: no handler", ErrInvalidGroup, c.Name)
	case c.Stream != natsx.RawStream && c.Stream != natsx.EnrichedStream:
		return fmt.Errorf("%w: %s: stream %q: want %s or %s", ErrInvalidGroup, c.Name, c.Stream, natsx.RawStream, natsx.EnrichedStream)
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return fmt.Errorf("%w: %s: concurrency %d: want 1 to 1024", ErrInvalidGroup, c.Name, c.Concurrency)
	case c.MaxDeliver < 1:
		return fmt.Errorf("%w: %s: max deliveries %d: want at least 1", ErrInvalidGroup, c.Name, c.MaxDeliver)
	case c.AckWait < time.Second:
		return fmt.Errorf("%w: %s: ack wait %s: want at least 1s", ErrInvalidGroup, c.Name, c.AckWait)
	}
	for _, d := range c.Backoff {
		if d < 0 {
			return fmt.Errorf("%w: %s: negative backoff %s", ErrInvalidGroup, c.Name, d)
		}
	}
	return nil
}

// Group runs one consumer group in this process.
type Group struct {
	cfg     Config
	js      jetstream.JetStream
	metrics *Metrics
	log     *slog.Logger

	tracer   trace.Tracer
	cons     jetstream.Consumer
	cc       jetstream.ConsumeContext
	work     chan jetstream.Msg
	quit     chan struct{}
	workers  sync.WaitGroup
	stopping atomic.Bool
	hardStop context.CancelFunc
	baseCtx  context.Context
}

// NewGroup validates cfg. Nothing touches NATS until Start.
func NewGroup(cfg Config, js jetstream.JetStream, metrics *Metrics, logger *slog.Logger) (*Group, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if js == nil || metrics == nil {
		return nil, fmt.Errorf("%w: %s: NewGroup needs JetStream and metrics", ErrInvalidGroup, cfg.Name)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Group{cfg: cfg, js: js, metrics: metrics, tracer: cfg.Tracing.tracer(), log: logger.With("component", "consumer", "group", cfg.Name)}, nil
}

// Name is the group's name.
func (g *Group) Name() string { return g.cfg.Name }

// ConsumerConfig is the durable consumer behind a group. Its filter includes
// the group's redrive subject. MaxDeliver is unlimited on the server: the
// runtime counts deliveries itself and dead-letters, so a message whose last
// delivery was lost to a crash is not silently abandoned.
func ConsumerConfig(cfg Config) jetstream.ConsumerConfig {
	cfg.setDefaults()
	filters := append([]string{}, cfg.Subjects...)
	redrive := natsx.RedriveSubject(cfg.Stream, cfg.Name)
	covered := false
	for _, f := range filters {
		covered = covered || subjectMatches(f, redrive)
	}
	if !covered {
		// The server refuses overlapping filters, so add it only when needed.
		filters = append(filters, redrive)
	}
	return jetstream.ConsumerConfig{
		Durable:        cfg.Name,
		Description:    "spectora-stream consumer group " + cfg.Name,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     -1,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  max(1000, cfg.Concurrency*4),
	}
}

// Start creates or updates the durable consumer and starts handling messages.
func (g *Group) Start(ctx context.Context) error {
	cons, err := g.js.CreateOrUpdateConsumer(ctx, g.cfg.Stream, ConsumerConfig(g.cfg))
	if err != nil {
		return fmt.Errorf("consumer group %s on %s: %w", g.cfg.Name, g.cfg.Stream, err)
	}
	g.cons = cons
	g.baseCtx, g.hardStop = context.WithCancel(context.Background())
	g.work = make(chan jetstream.Msg)
	g.quit = make(chan struct{})
	for range g.cfg.Concurrency {
		g.workers.Add(1)
		go func() {
			defer g.workers.Done()
			for {
				select {
				case m := <-g.work:
					g.handle(m)
				case <-g.quit:
					return
				}
			}
		}()
	}
	// Pull only what the workers can take, so instances share work fairly and
	// buffered messages don't sit out their ack wait.
	g.cc, err = cons.Consume(g.dispatch,
		jetstream.PullMaxMessages(g.cfg.Concurrency),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) || !g.stopping.Load() {
				g.log.Warn("consume", "err", err)
			}
		}))
	if err != nil {
		close(g.quit)
		g.hardStop()
		return fmt.Errorf("consume %s: %w", g.cfg.Name, err)
	}
	go g.samplePending()
	g.log.Info("consumer group started", "stream", g.cfg.Stream, "subjects", g.cfg.Subjects, "concurrency", g.cfg.Concurrency, "max_deliver", g.cfg.MaxDeliver)
	return nil
}

// dispatch runs on the consume goroutine and blocks while every worker is
// busy. Once stopping, buffered messages go straight back to the server.
func (g *Group) dispatch(m jetstream.Msg) {
	if !g.stopping.Load() {
		select {
		case g.work <- m:
			return
		case <-g.quit:
		}
	}
	_ = m.Nak()
	g.metrics.processed.WithLabelValues(g.cfg.Name, "drained").Inc()
}

// Stop stops pulling, hands buffered messages back, and waits for in-flight
// handlers until ctx ends; then cancels them, and their messages are naked
// back. No message is lost either way: unacknowledged ones are redelivered.
func (g *Group) Stop(ctx context.Context) error {
	if g.cc == nil || !g.stopping.CompareAndSwap(false, true) {
		return nil
	}
	g.cc.Drain()
	select {
	case <-g.cc.Closed():
	case <-ctx.Done():
		g.cc.Stop()
	}
	close(g.quit)
	finished := make(chan struct{})
	go func() { g.workers.Wait(); close(finished) }()
	var err error
	select {
	case <-finished:
	case <-ctx.Done():
		g.hardStop() // handlers see ctx.Done; their messages are naked
		<-finished
		err = fmt.Errorf("group %s: in-flight handlers cancelled at shutdown: %w", g.cfg.Name, ctx.Err())
	}
	g.hardStop()
	// Acks and naks are fire-and-forget: make sure they left the process
	// before the caller closes the connection.
	if ferr := g.js.Conn().FlushTimeout(2 * time.Second); ferr != nil && err == nil && !g.js.Conn().IsClosed() {
		g.log.Warn("flushing acks at shutdown", "err", ferr)
	}
	g.log.Info("consumer group stopped")
	return err
}

// subjectMatches reports whether the NATS filter (with * and >) matches subject.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// redriveFor returns the group a redrive subject is meant for, or "".
func redriveFor(subject string) string {
	t := strings.Split(subject, ".")
	if len(t) >= 3 && t[len(t)-2] == natsx.RedriveResource {
		return t[len(t)-1]
	}
	return ""
}

func (g *Group) handle(m jetstream.Msg) {
	if target := redriveFor(m.Subject()); target != "" && target != g.cfg.Name {
		// Another group's redriven dead letter, matched by a broad filter.
		_ = m.Ack()
		return
	}
	start := time.Now()
	msg, err := decode(g.cfg.Name, m)
	ctx, span := telemetry.StartProcess(g.baseCtx, g.tracer, g.cfg.Tracing.propagator(), m.Subject(), m.Headers(), spanAttrs(g.cfg.Name, m, msg)...)
	var dec Decision
	switch {
	case err != nil:
		err = Permanent(err)
		dec = Decision{Action: ActionDeadLetter, Reason: "permanent"}
	case msg.Delivered > uint64(g.cfg.MaxDeliver):
		// Earlier deliveries got no answer within the ack wait (a crash or a
		// hang): don't run a possibly poisonous message again.
		err = fmt.Errorf("delivered %d times without an answer within ack wait %s", msg.Delivered, g.cfg.AckWait)
		dec = Decision{Action: ActionDeadLetter, Reason: "max_deliveries"}
	default:
		err = g.run(ctx, msg)
		if err != nil && g.baseCtx.Err() != nil {
			// Cancelled by a hard stop: hand it back at once, not a failure.
			_ = m.Nak()
			g.metrics.processed.WithLabelValues(g.cfg.Name, "drained").Inc()
			span.SetAttributes(attrOutcome.String("drained"))
			telemetry.End(span, err)
			return
		}
		dec = Decide(err, msg.Delivered, g.cfg.MaxDeliver, g.cfg.Backoff)
	}
	g.metrics.duration.WithLabelValues(g.cfg.Name).Observe(time.Since(start).Seconds())
	seq := uint64(0)
	if msg != nil {
		seq = msg.Sequence
	}
	switch dec.Action {
	case ActionAck:
		if ackErr := m.Ack(); ackErr != nil {
			g.log.WarnContext(ctx, "ack failed; the message will be redelivered", "seq", seq, "err", ackErr)
		}
	case ActionRetry:
		g.log.InfoContext(ctx, "handler failed; retrying", "seq", seq, "delivered", msgDelivered(msg), "in", dec.Delay.String(), "err", err)
		_ = m.NakWithDelay(dec.Delay)
	case ActionDeadLetter:
		if dlqErr := g.deadLetter(ctx, m, msg, dec.Reason, err); dlqErr != nil {
			// Never drop: try again later.
			g.log.ErrorContext(ctx, "dead-lettering failed; retrying the message", "seq", seq, "err", dlqErr)
			_ = m.NakWithDelay(g.cfg.Backoff[len(g.cfg.Backoff)-1])
			dec.Action = ActionRetry
		} else {
			g.log.WarnContext(ctx, "message dead-lettered", "seq", seq, "reason", dec.Reason, "err", err)
			_ = m.TermWithReason(dec.Reason)
		}
	}
	g.metrics.processed.WithLabelValues(g.cfg.Name, dec.Action.String()).Inc()
	span.SetAttributes(attrOutcome.String(dec.Action.String()))
	telemetry.End(span, err)
}

// attrOutcome is what the runtime did with the delivery: ack, retry, dead_lettered.
var attrOutcome = attribute.Key("spectora.consumer.outcome")

// spanAttrs describe one delivery on its CONSUMER span.
func spanAttrs(group string, m jetstream.Msg, msg *Message) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.MessagingConsumerGroupName(group)}
	if id := m.Headers().Get(natsx.HeaderMsgID); id != "" {
		attrs = append(attrs, semconv.MessagingMessageID(id))
	}
	if msg == nil {
		return attrs
	}
	attrs = append(attrs,
		telemetry.AttrStream.String(msg.Stream),
		telemetry.AttrStreamSequence.Int64(int64(msg.Sequence)),
		telemetry.AttrDeliveryCount.Int64(int64(msg.Delivered)))
	if ev := msg.Event; ev != nil {
		attrs = append(attrs, telemetry.AttrSvixID.String(ev.GetId()), telemetry.AttrEventType.String(ev.GetType()),
			telemetry.AttrRecordID.String(ev.GetRecordId()))
	}
	return attrs
}

func msgDelivered(m *Message) uint64 {
	if m == nil {
		return 0
	}
	return m.Delivered
}

// run calls the handler with InProgress heartbeats and turns a panic into an
// error (retried like any other).
func (g *Group) run(ctx context.Context, msg *Message) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hbDone := make(chan struct{})
	go func() {
		t := time.NewTicker(g.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				close(hbDone)
				return
			case <-t.C:
				_ = msg.raw.InProgress()
			}
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			g.log.ErrorContext(ctx, "handler panicked", "seq", msg.Sequence, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
		cancel()
		<-hbDone
	}()
	return g.cfg.Handler(ctx, msg)
}

// deadLetter stores the original message in SPECTORA_DLQ and waits for the
// PubAck; only then may the caller terminate the original.
func (g *Group) deadLetter(ctx context.Context, m jetstream.Msg, msg *Message, reason string, cause error) (err error) {
	md, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDeadLetter, err)
	}
	subject := m.Subject()
	if msg != nil {
		subject = msg.Subject
	}
	resource, action := lastTwoTokens(subject)
	dl := nats.NewMsg(natsx.DLQPrefix + "." + g.cfg.Name + "." + resource + "." + action)
	dl.Data = m.Data()
	for k, v := range m.Headers() {
		if !strings.HasPrefix(k, "Nats-") {
			dl.Header[k] = v
		}
	}
	errText := ""
	if cause != nil {
		errText = cause.Error()
	}
	dl.Header.Set(natsx.HeaderOriginalSubject, subject)
	dl.Header.Set(natsx.HeaderOriginalStream, md.Stream)
	dl.Header.Set(natsx.HeaderOriginalSequence, strconv.FormatUint(md.Sequence.Stream, 10))
	dl.Header.Set(natsx.HeaderDLQGroup, g.cfg.Name)
	dl.Header.Set(natsx.HeaderDLQDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	dl.Header.Set(natsx.HeaderDLQReason, reason)
	dl.Header.Set(natsx.HeaderDLQError, natsx.HeaderValue(errText))
	dl.Header.Set(natsx.HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	// One dead letter per group and original message, even if this runs twice.
	id := fmt.Sprintf("dlq.%s.%s.%d.%d", g.cfg.Name, md.Stream, md.Sequence.Stream, md.NumDelivered)
	ctx, span := telemetry.StartPublish(ctx, g.tracer, g.cfg.Tracing.propagator(), dl, semconv.MessagingMessageID(id),
		semconv.MessagingConsumerGroupName(g.cfg.Name), attribute.String("spectora.dlq.reason", reason))
	defer func() { telemetry.End(span, err) }()
	// Not the handler's context: a hard stop must not cancel storing the dead letter.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := g.js.PublishMsg(ctx, dl, jetstream.WithMsgID(id), jetstream.WithExpectStream(natsx.DLQStream)); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDeadLetter, dl.Subject, err)
	}
	return nil
}

// lastTwoTokens returns resource and action from spectora.<r>.<a> or
// spectora.enriched.<r>.<a>; anything else maps to unrouted.unknown.
func lastTwoTokens(subject string) (string, string) {
	t := strings.Split(subject, ".")
	if len(t) < 3 {
		return "unrouted", "unknown"
	}
	return t[len(t)-2], t[len(t)-1]
}

// samplePending updates the pending gauges until the group stops.
func (g *Group) samplePending() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if info, err := g.cons.Info(ctx); err == nil {
			g.metrics.pending.WithLabelValues(g.cfg.Name).Set(float64(info.NumPending))
			g.metrics.ackPending.WithLabelValues(g.cfg.Name).Set(float64(info.NumAckPending))
		}
		cancel()
		select {
		case <-g.quit:
			return
		case <-t.C:
		}
	}
}
