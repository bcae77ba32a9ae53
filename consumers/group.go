package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Handler processes one message. Return nil when done, an error to have the
// message retried with backoff, or an error wrapping ErrPermanent to
// dead-letter it at once. ctx ends when the group stops hard.
type Handler func(ctx context.Context, m *Message) error

// Config describes a consumer group: a durable JetStream pull consumer whose
// instances share the work, while separate groups each see every event.
// Zero values take the documented defaults; nil Logger, Metrics and
// TracerProvider turn logs, metrics and tracing off.
type Config struct {
	// Name is the group and durable consumer name: lowercase letters, digits,
	// "_" and "-", at most 48. Required.
	Name string
	// Stream is the stream read: stream.Raw (default) or stream.Enriched.
	Stream string
	// Subjects filter the stream, e.g. "spectora.inspection.*"; default every
	// event (stream.EventSubjects). A filter that would also match other
	// groups' redrives (such as "spectora.>") is refused.
	Subjects []string
	// Handler processes each message. Required.
	Handler Handler
	// Middleware wraps Handler, the first entry outermost. They run inside
	// the runtime's own: tracing, metrics and recovery.
	Middleware []Middleware
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
	// DrainTimeout bounds how long Run waits, once its context ends, for
	// in-flight handlers; then their contexts are cancelled and their
	// messages handed back. Default 20s.
	DrainTimeout time.Duration
	// WatchInterval is how often the group samples its consumer: pending
	// counts for Metrics, and events the stream's limits removed before the
	// group processed them (logged, and counted in Metrics). Default 10s.
	WatchInterval time.Duration
	// Logger receives the group's logs; nil discards them.
	Logger *slog.Logger
	// Metrics records processing outcomes, durations and pending counts; nil
	// records nothing. Share one Metrics between the groups of a process.
	Metrics *Metrics
	// TracerProvider traces each delivery as a CONSUMER span continuing the
	// producer's trace; nil turns tracing off.
	TracerProvider trace.TracerProvider
	// Propagator reads trace context from headers; default W3C trace context
	// and baggage.
	Propagator propagation.TextMapPropagator
}

// pullHeartbeat is the idle heartbeat of the group's pull requests: the
// longest a stalled pull lasts is twice this.
const pullHeartbeat = time.Second

var groupName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,47}$`)

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = stream.Raw
	}
	if len(c.Subjects) == 0 {
		c.Subjects = []string{stream.EventSubjects(c.Stream)}
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
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.WatchInterval == 0 {
		c.WatchInterval = 10 * time.Second
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
	case !groupName.MatchString(c.Name):
		return fmt.Errorf("%w: name %q: want lowercase letters, digits, _ or -, at most 48", ErrInvalidConfig, c.Name)
	case c.Handler == nil:
		return fmt.Errorf("%w: group %s: no handler", ErrInvalidConfig, c.Name)
	case c.Stream != stream.Raw && c.Stream != stream.Enriched:
		return fmt.Errorf("%w: group %s: stream %q: want %s or %s", ErrInvalidConfig, c.Name, c.Stream, stream.Raw, stream.Enriched)
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return fmt.Errorf("%w: group %s: concurrency %d: want 1 to 1024", ErrInvalidConfig, c.Name, c.Concurrency)
	case c.MaxDeliver < 1:
		return fmt.Errorf("%w: group %s: max deliveries %d: want at least 1", ErrInvalidConfig, c.Name, c.MaxDeliver)
	case c.AckWait < time.Second:
		return fmt.Errorf("%w: group %s: ack wait %s: want at least 1s", ErrInvalidConfig, c.Name, c.AckWait)
	case c.WatchInterval < 0:
		return fmt.Errorf("%w: group %s: watch interval %s: must not be negative", ErrInvalidConfig, c.Name, c.WatchInterval)
	case c.DrainTimeout < 0:
		return fmt.Errorf("%w: group %s: drain timeout %s: must not be negative", ErrInvalidConfig, c.Name, c.DrainTimeout)
	case len(c.Backoff) == 0:
		return fmt.Errorf("%w: group %s: backoff: want at least one delay", ErrInvalidConfig, c.Name)
	}
	for _, d := range c.Backoff {
		if d < 0 {
			return fmt.Errorf("%w: group %s: negative backoff %s", ErrInvalidConfig, c.Name, d)
		}
	}
	// A redrive subject of another group: "~" is no valid group name, so
	// only a wildcard can match it.
	other := stream.RedriveSubject(c.Stream, "~", 1)
	for _, f := range c.Subjects {
		if stream.SubjectMatches(f, other) {
			return fmt.Errorf("%w: group %s: filter %q also matches other groups' redrives (%s); use %s or narrower",
				ErrInvalidConfig, c.Name, f, stream.RedriveFilter(c.Stream, "<group>"), stream.EventSubjects(c.Stream))
		}
	}
	return nil
}

// Group runs one consumer group in this process.
type Group struct {
	cfg     Config
	js      jetstream.JetStream
	handler Handler
	tracer  trace.Tracer
	log     *slog.Logger
	running atomic.Bool
}

// NewGroup validates cfg and builds the group. Nothing touches NATS until Run.
func NewGroup(cfg Config, js jetstream.JetStream) (*Group, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if js == nil {
		return nil, fmt.Errorf("%w: group %s: no JetStream", ErrInvalidConfig, cfg.Name)
	}
	g := &Group{cfg: cfg, js: js, log: cfg.Logger.With("component", "consumer", "group", cfg.Name)}
	// The runtime's own middlewares outermost, then the group's.
	var chain []Middleware
	if cfg.TracerProvider != nil {
		g.tracer = cfg.TracerProvider.Tracer(telemetry.ScopeName)
		chain = append(chain, Tracing(cfg.TracerProvider, cfg.Propagator))
	}
	if cfg.Metrics != nil {
		chain = append(chain, cfg.Metrics.Middleware())
	}
	chain = append(chain, Recover(g.log), g.guard)
	chain = append(chain, cfg.Middleware...)
	g.handler = Chain(chain...)(cfg.Handler)
	return g, nil
}

// Name is the group's name.
func (g *Group) Name() string { return g.cfg.Name }

// ConsumerConfig is the durable consumer behind the group. Its filters are
// the group's subjects and its redrive subjects. MaxDeliver is unlimited on
// the server: the runtime counts deliveries itself and dead-letters, so a
// message whose last delivery was lost to a crash is not silently abandoned.
func (g *Group) ConsumerConfig() jetstream.ConsumerConfig {
	filters := append([]string{}, g.cfg.Subjects...)
	own := stream.RedriveSubject(g.cfg.Stream, g.cfg.Name, 1)
	covered := false
	for _, f := range filters {
		covered = covered || stream.SubjectMatches(f, own)
	}
	if !covered {
		// The server refuses overlapping filters, so add it only when needed.
		filters = append(filters, stream.RedriveFilter(g.cfg.Stream, g.cfg.Name))
	}
	return jetstream.ConsumerConfig{
		Durable:        g.cfg.Name,
		Description:    "spectora-stream consumer group " + g.cfg.Name,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        g.cfg.AckWait,
		MaxDeliver:     -1,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  max(1000, g.cfg.Concurrency*4),
	}
}

// run is one Run's state.
type run struct {
	g        *Group
	filters  []string
	base     context.Context // handlers' context: survives Run's ctx until the drain bound
	hardStop context.CancelFunc
	work     chan jetstream.Msg
	quit     chan struct{}
	stopping atomic.Bool
}

// Run creates or updates the durable consumer and handles messages until ctx
// ends. Then it stops pulling, hands buffered messages back, and waits up to
// DrainTimeout for in-flight handlers before cancelling them (their messages
// are handed back too). Nothing is lost either way: unacknowledged messages
// are redelivered. It returns nil after a clean drain.
func (g *Group) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: %s", ErrRunning, g.cfg.Name)
	}
	defer g.running.Store(false)
	ccfg := g.ConsumerConfig()
	cons, err := g.js.CreateOrUpdateConsumer(ctx, g.cfg.Stream, ccfg)
	if err != nil {
		return fmt.Errorf("consumer group %s on %s: %w", g.cfg.Name, g.cfg.Stream, err)
	}
	r := &run{g: g, filters: ccfg.FilterSubjects, work: make(chan jetstream.Msg), quit: make(chan struct{})}
	if sub, err := r.watchTerminations(); err != nil {
		g.log.Warn("can't watch for deliveries removed by stream limits", "err", err)
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	r.base, r.hardStop = context.WithCancel(context.WithoutCancel(ctx))
	defer r.hardStop()
	var workers, background sync.WaitGroup
	for range g.cfg.Concurrency {
		workers.Go(func() {
			for {
				select {
				case m := <-r.work:
					r.handle(m)
				case <-r.quit:
					return
				}
			}
		})
	}
	// Pull only what the workers can take, so instances share work fairly and
	// buffered messages don't sit out their ack wait.
	// A 1 s idle heartbeat instead of the client's 15 s: now and then (about
	// one drain in twelve on a busy 2-core machine, always a group tailing a
	// stream that is being written) the client still counts pull requests
	// the server no longer holds, and pulls nothing more until it misses two
	// heartbeats. That stall then lasts 2 s, not 30 s.
	cc, err := cons.Consume(r.dispatch,
		jetstream.PullMaxMessages(g.cfg.Concurrency),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			switch {
			case errors.Is(err, jetstream.ErrNoHeartbeat) && r.stopping.Load():
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				// The client pulls again at once; see pullHeartbeat.
				g.log.Info("no pull heartbeat; pulling again", "after", (2 * pullHeartbeat).String())
			default:
				g.log.Warn("consume", "err", err)
			}
		}))
	if err != nil {
		close(r.quit)
		workers.Wait()
		return fmt.Errorf("consume %s: %w", g.cfg.Name, err)
	}
	background.Go(func() { r.watch(cons, r.quit) })
	g.log.Info("consumer group started", "stream", g.cfg.Stream, "subjects", g.cfg.Subjects,
		"concurrency", g.cfg.Concurrency, "max_deliver", g.cfg.MaxDeliver)

	<-ctx.Done()
	err = r.drain(cc, &workers)
	background.Wait()
	g.log.Info("consumer group stopped")
	return err
}

// drain stops pulling and waits for the workers within DrainTimeout.
func (r *run) drain(cc jetstream.ConsumeContext, workers *sync.WaitGroup) error {
	g := r.g
	r.stopping.Store(true)
	deadline := time.NewTimer(g.cfg.DrainTimeout)
	defer deadline.Stop()
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-deadline.C:
		cc.Stop()
	}
	close(r.quit)
	finished := make(chan struct{})
	go func() { workers.Wait(); close(finished) }()
	var err error
	select {
	case <-finished:
	case <-deadline.C:
		r.hardStop() // handlers see ctx.Done; their messages are handed back
		<-finished
		err = fmt.Errorf("%w: group %s after %s", ErrDrainTimeout, g.cfg.Name, g.cfg.DrainTimeout)
	}
	// Acks and naks are fire-and-forget: make sure they left the process
	// before the caller closes the connection.
	if nc := g.js.Conn(); !nc.IsClosed() {
		if ferr := nc.FlushTimeout(2 * time.Second); ferr != nil {
			g.log.Warn("flushing acks at shutdown", "err", ferr)
		}
	}
	return err
}

// dispatch runs on the consume goroutine and blocks while every worker is
// busy. Once stopping, buffered messages go straight back to the server.
func (r *run) dispatch(m jetstream.Msg) {
	if !r.stopping.Load() {
		select {
		case r.work <- m:
			return
		case <-r.quit:
		}
	}
	_ = m.Nak()
	if mt := r.g.cfg.Metrics; mt != nil {
		mt.processed.WithLabelValues(r.g.cfg.Name, string(OutcomeDrained)).Inc()
	}
}

// handle runs the handler chain on one delivery and settles it.
func (r *run) handle(jm jetstream.Msg) {
	g := r.g
	m := newMessage(r.base, g.cfg.Name, jm)
	err := r.call(m)
	var dec Decision
	if err != nil && r.base.Err() != nil {
		// Cancelled by a hard stop: hand it back at once; not a failure.
		dec = Decision{Outcome: OutcomeDrained}
	} else {
		dec = Decide(err, m.Delivered, g.cfg.MaxDeliver, g.cfg.Backoff)
	}
	dec = r.settle(m, dec, err)
	m.runSettled(dec.Outcome)
}

// settle acts on the decision and returns what was actually done.
func (r *run) settle(m *Message, dec Decision, err error) Decision {
	g, ctx := r.g, m.settleCtx
	switch dec.Outcome {
	case OutcomeAck:
		if ackErr := m.raw.Ack(); ackErr != nil {
			g.log.WarnContext(ctx, "ack failed; the message will be redelivered", "seq", m.Sequence, "err", ackErr)
		}
	case OutcomeDrained:
		_ = m.raw.Nak()
	case OutcomeRetry:
		g.log.InfoContext(ctx, "handler failed; retrying", "seq", m.Sequence, "delivered", m.Delivered, "in", dec.Delay.String(), "err", err)
		_ = m.raw.NakWithDelay(dec.Delay)
	case OutcomeDeadLettered:
		if dlqErr := r.deadLetter(ctx, m, dec.Reason, err); dlqErr != nil {
			// Never drop: try again later.
			g.log.ErrorContext(ctx, "dead-lettering failed; retrying the message", "seq", m.Sequence, "err", dlqErr)
			_ = m.raw.NakWithDelay(g.cfg.Backoff[len(g.cfg.Backoff)-1])
			return Decision{Outcome: OutcomeRetry, Delay: g.cfg.Backoff[len(g.cfg.Backoff)-1]}
		}
		g.log.WarnContext(ctx, "message dead-lettered", "seq", m.Sequence, "reason", dec.Reason, "err", err)
		_ = m.raw.TermWithReason(dec.Reason)
	}
	return dec
}

// call runs the handler chain with InProgress heartbeats while it works: a
// timer, not a goroutine, per message. None is sent once call returns or the
// run stops hard (then the message is to be handed back, not held).
func (r *run) call(m *Message) error {
	ctx, cancel := context.WithCancel(r.base)
	every := r.g.cfg.AckWait / 3
	var (
		mu   sync.Mutex
		done bool
		hb   *time.Timer
	)
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		done = true
		hb.Stop()
	}
	mu.Lock()
	hb = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			_ = m.raw.InProgress()
			hb.Reset(every)
		}
	})
	mu.Unlock()
	unhook := context.AfterFunc(ctx, stop)
	defer func() {
		unhook()
		stop()
		cancel()
	}()
	return r.g.handler(ctx, m)
}

// guard keeps messages that must not reach the handler from it: one that
// doesn't decode is dead-lettered as permanent; one delivered more than
// MaxDeliver times without an answer (its handler crashed or hung) is
// dead-lettered without running again.
func (g *Group) guard(next Handler) Handler {
	return func(ctx context.Context, m *Message) error {
		if m.decodeErr != nil {
			return Permanent(m.decodeErr)
		}
		if m.Delivered > uint64(g.cfg.MaxDeliver) {
			return fmt.Errorf("%w: delivered %d times, none answered within ack wait %s", errUnanswered, m.Delivered, g.cfg.AckWait)
		}
		return next(ctx, m)
	}
}

// deadLetter stores the original message in the dead-letter stream and waits
// for the PubAck; only then may the caller terminate the original.
func (r *run) deadLetter(ctx context.Context, m *Message, reason string, cause error) (err error) {
	g := r.g
	dl := nats.NewMsg(m.Route().DeadLetterSubject(g.cfg.Name))
	dl.Data = m.raw.Data()
	stream.CopyHeaders(dl.Header, m.Header)
	meta := stream.DeadLetter{
		Group: g.cfg.Name, OriginalSubject: m.Subject, OriginalStream: m.Stream, OriginalSequence: m.Sequence,
		Deliveries: m.Delivered, Reason: reason, Time: time.Now(),
	}
	if prev, _ := stream.ParseDeadLetter(m.Header); prev.OriginalStream != "" && prev.OriginalSequence != 0 {
		// A redriven dead letter failed again: it still began where it began.
		meta.OriginalStream, meta.OriginalSequence = prev.OriginalStream, prev.OriginalSequence
	}
	if cause != nil {
		meta.Error = cause.Error()
	}
	meta.SetHeaders(dl.Header)
	// One dead letter per group and delivery, even if this runs twice.
	id := fmt.Sprintf("dlq.%s.%s.%d.%d", g.cfg.Name, m.Stream, m.Sequence, m.Delivered)
	if g.tracer != nil {
		var span trace.Span
		ctx, span = telemetry.StartPublish(ctx, g.tracer, g.cfg.Propagator, dl, semconv.MessagingMessageID(id),
			semconv.MessagingConsumerGroupName(g.cfg.Name), attribute.String("spectora.dlq.reason", reason))
		defer func() { telemetry.End(span, err) }()
	}
	// Not the handler's context: a hard stop must not cancel storing the dead letter.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := g.js.PublishMsg(ctx, dl, jetstream.WithMsgID(id), jetstream.WithExpectStream(stream.DLQ)); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDeadLetter, dl.Subject, err)
	}
	return nil
}
