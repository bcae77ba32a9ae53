package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/webhook"
)

// SvixSchedule is Svix's retry schedule: the delay before each retry.
var SvixSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Event is one webhook the sender delivers.
type Event struct {
	MsgID    string
	Type     string
	RecordID string
	Body     []byte
	// Silent is a change Spectora makes without a webhook (a quick publish):
	// the store has it, the sender sends nothing.
	Silent bool
}

// Script produces realistic event sequences against a Store: an agent and a
// client are created, an inspection is created, confirmed, rescheduled and
// published, a second one is created, canceled and deleted, the agent and
// client are updated and finally deleted. One round covers all eleven
// Spectora event types plus inspection.rescheduled, which Spectora's list
// doesn't have (so consumers see an unknown type flow too).
type Script struct {
	store *Store
	queue []func() Event
	// QuickPublish publishes inspections the way Spectora's quick publish
	// does: the record becomes published, no inspection.published is sent.
	QuickPublish bool
}

// NewScript writes its records into store.
func NewScript(store *Store) *Script { return &Script{store: store} }

func (s *Script) ev(typ, id string) Event {
	return Event{MsgID: webhook.NewMessageID(), Type: typ, RecordID: id,
		Body: webhook.Body(typ, id, map[string]any{"created_at": time.Now().UTC().Format(time.RFC3339)})}
}

func (s *Script) round() {
	var agent, client, insp, insp2 string
	st := s.store
	s.queue = []func() Event{
		func() Event { agent = st.create(typeAgent, nil); return s.ev("agent.created", agent) },
		func() Event { client = st.create(typeClient, nil); return s.ev("client.created", client) },
		func() Event {
			insp = st.create(typeInspection, map[string]any{
				"agent":  map[string]any{"data": map[string]string{"type": typeAgent, "id": agent}},
				"client": map[string]any{"data": map[string]string{"type": typeClient, "id": client}},
			})
			return s.ev("inspection.created", insp)
		},
		func() Event {
			st.update(typeInspection, insp, "confirmed", true)
			return s.ev("inspection.confirmed", insp)
		},
		func() Event {
			st.update(typeInspection, insp, "scheduled_at", time.Now().Add(72*time.Hour).UTC().Format(time.RFC3339))
			return s.ev("inspection.rescheduled", insp)
		},
		func() Event { st.update(typeAgent, agent, "phone", "555-0100"); return s.ev("agent.updated", agent) },
		func() Event {
			st.update(typeClient, client, "email", "new@example.com")
			return s.ev("client.updated", client)
		},
		func() Event {
			st.update(typeInspection, insp, "published_at", time.Now().UTC().Format(time.RFC3339Nano))
			st.update(typeInspection, insp, "status", "published")
			ev := s.ev("inspection.published", insp)
			ev.Silent = s.QuickPublish
			return ev
		},
		func() Event { insp2 = st.create(typeInspection, nil); return s.ev("inspection.created", insp2) },
		func() Event {
			st.update(typeInspection, insp2, "status", "canceled")
			return s.ev("inspection.canceled", insp2)
		},
		func() Event { st.remove(typeInspection, insp2); return s.ev("inspection.deleted", insp2) },
		func() Event { st.remove(typeClient, client); return s.ev("client.deleted", client) },
		func() Event { st.remove(typeAgent, agent); return s.ev("agent.deleted", agent) },
	}
}

// RoundLength is the number of events in one script round.
const RoundLength = 13

// Next returns the next event, applying its change to the store first so the
// API already reflects it when the webhook arrives.
func (s *Script) Next() Event {
	if len(s.queue) == 0 {
		s.round()
	}
	f := s.queue[0]
	s.queue = s.queue[1:]
	return f()
}

// SenderConfig configures the webhook sender.
type SenderConfig struct {
	// URL is the gateway's webhook endpoint.
	URL string
	// Secret is a whsec_ signing secret (SPECTORA_WEBHOOK_SECRET).
	Secret string
	// Rate is events per second; default 2.
	Rate float64
	// Count stops after this many events; 0 runs until Duration or ctx ends.
	Count int
	// Duration bounds the run when Count is 0; 0 means until ctx ends.
	Duration time.Duration
	// Schedule is the retry schedule; default SvixSchedule.
	Schedule []time.Duration
	// TimeScale multiplies the schedule's delays: 1 is Svix's real timing,
	// 0.001 turns 5 minutes into 300 ms.
	TimeScale float64
	// Timeout is one attempt's HTTP timeout; default 15s, like Svix.
	Timeout time.Duration
	// Sleep waits between retries; default honours ctx. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// BlackoutAfter and BlackoutFor make a blackout: events made from
	// BlackoutAfter after the start for BlackoutFor change the store but are
	// not sent, as if the receiver had been away longer than Svix retries.
	// BlackoutFor 0: no blackout.
	BlackoutAfter, BlackoutFor time.Duration
	// OnAttempt, if set, is called after every delivery attempt with its
	// answer (status 0 and err set when none came), from many goroutines.
	OnAttempt func(ev Event, attempt, status int, err error)
}

// Stats are the sender's counts.
type Stats struct {
	Events    atomic.Int64 // events generated
	Attempts  atomic.Int64 // HTTP attempts
	Delivered atomic.Int64 // events answered 2xx
	Retried   atomic.Int64 // attempts after the first
	Failed    atomic.Int64 // events that exhausted the schedule
	Withheld  atomic.Int64 // changes made without a webhook (blackout, quick publish)
}

// String reports the counts.
func (s *Stats) String() string {
	text := fmt.Sprintf("events %d, delivered %d, attempts %d, retried %d, failed %d",
		s.Events.Load(), s.Delivered.Load(), s.Attempts.Load(), s.Retried.Load(), s.Failed.Load())
	if n := s.Withheld.Load(); n > 0 {
		text += fmt.Sprintf(", withheld %d", n)
	}
	return text
}

// Sender delivers webhooks like Svix: signed through the svix library, a fresh
// timestamp on every attempt, retried on any non-2xx or timeout along the
// schedule, stopping at the first 2xx.
type Sender struct {
	cfg    SenderConfig
	signer *webhook.Signer
	client *http.Client
	log    *slog.Logger
	Stats  Stats
}

// NewSender validates cfg.
func NewSender(cfg SenderConfig, logger *slog.Logger) (*Sender, error) {
	signer, err := webhook.NewSigner(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("SPECTORA_WEBHOOK_SECRET: %w", err)
	}
	if cfg.URL == "" {
		return nil, errors.New("sim: gateway URL is empty")
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 2
	}
	if cfg.Schedule == nil {
		cfg.Schedule = SvixSchedule
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Sleep == nil {
		cfg.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sender{cfg: cfg, signer: signer, client: &http.Client{Timeout: cfg.Timeout}, log: logger.With("component", "sim-sender")}, nil
}

// Run sends events from script at the configured rate until Count, Duration
// or ctx ends, then waits for deliveries still retrying (until ctx ends).
func (s *Sender) Run(ctx context.Context, script *Script) error {
	return s.RunUntil(ctx, ctx, script)
}

// RunUntil is Run that stops making new events when genCtx ends but lets
// deliveries retrying at that moment go on, like Svix, until they succeed,
// exhaust the schedule or ctx ends.
func (s *Sender) RunUntil(genCtx, ctx context.Context, script *Script) error {
	if s.cfg.Count == 0 && s.cfg.Duration > 0 {
		var cancel context.CancelFunc
		genCtx, cancel = context.WithTimeout(genCtx, s.cfg.Duration)
		defer cancel()
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / s.cfg.Rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	start := time.Now()
	for s.cfg.Count == 0 || int(s.Stats.Events.Load()) < s.cfg.Count {
		ev := script.Next()
		s.Stats.Events.Add(1)
		if since := time.Since(start); ev.Silent || (s.cfg.BlackoutFor > 0 && since >= s.cfg.BlackoutAfter && since < s.cfg.BlackoutAfter+s.cfg.BlackoutFor) {
			s.Stats.Withheld.Add(1)
			s.log.Debug("change made without a webhook", "type", ev.Type, "record", ev.RecordID, "quick_publish", ev.Silent)
		} else {
			wg.Add(1)
			go func() { defer wg.Done(); s.Deliver(ctx, ev) }()
		}
		select {
		case <-genCtx.Done():
			wg.Wait()
			return nil
		case <-tick.C:
		}
	}
	wg.Wait()
	return nil
}

// Deliver sends one event, retrying along the schedule. It reports whether
// the event was delivered.
func (s *Sender) Deliver(ctx context.Context, ev Event) bool {
	for i, delay := range s.cfg.Schedule {
		if i > 0 {
			if err := s.cfg.Sleep(ctx, time.Duration(float64(delay)*s.cfg.TimeScale)); err != nil {
				s.Stats.Failed.Add(1)
				return false
			}
			s.Stats.Retried.Add(1)
		}
		s.Stats.Attempts.Add(1)
		status, err := s.attempt(ctx, ev)
		if s.cfg.OnAttempt != nil {
			s.cfg.OnAttempt(ev, i+1, status, err)
		}
		if err == nil && status >= 200 && status < 300 {
			s.Stats.Delivered.Add(1)
			return true
		}
		s.log.Info("delivery attempt failed", "id", ev.MsgID, "type", ev.Type, "attempt", i+1, "status", status, "err", err)
	}
	s.Stats.Failed.Add(1)
	s.log.Warn("event failed after the whole retry schedule", "id", ev.MsgID, "type", ev.Type)
	return false
}

func (s *Sender) attempt(ctx context.Context, ev Event) (int, error) {
	hdr, err := s.signer.Headers(ev.MsgID, time.Now(), ev.Body) // fresh timestamp every attempt
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(ev.Body))
	if err != nil {
		return 0, err
	}
	req.Header = hdr
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
