package consumers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/admin"
	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/stream"
)

func TestSeparateGroupsEachGetEveryEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := newRecorder(), newRecorder()
	e.start(t, consumers.Config{Name: "crm", Handler: a.handler})
	e.start(t, consumers.Config{Name: "billing", Handler: b.handler})
	var last uint64
	for i := range 20 {
		last = e.publish(t, fmt.Sprintf("msg_%d", i), "inspection.confirmed", strconv.Itoa(i))
	}
	natstest.WaitDone(t, e.js, stream.Raw, "crm", last)
	natstest.WaitDone(t, e.js, stream.Raw, "billing", last)
	for i := range 20 {
		id := fmt.Sprintf("msg_%d", i)
		if a.count(id) != 1 || b.count(id) != 1 {
			t.Fatalf("%s seen %d/%d times", id, a.count(id), b.count(id))
		}
	}
}

func TestInstancesOfOneGroupSplitTheWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var (
		mu       sync.Mutex
		inFlight = map[string]bool{}
		handled  = map[string]int{}
		byInst   [2]atomic.Int64
		overlap  atomic.Int64
	)
	handler := func(inst int) consumers.Handler {
		return func(_ context.Context, m *consumers.Message) error {
			id := m.Event.GetId()
			mu.Lock()
			if inFlight[id] {
				overlap.Add(1)
			}
			inFlight[id] = true
			mu.Unlock()
			time.Sleep(2 * time.Millisecond) // real work takes time; instances overlap
			mu.Lock()
			delete(inFlight, id)
			handled[id]++
			mu.Unlock()
			byInst[inst].Add(1)
			return nil
		}
	}
	e.start(t, consumers.Config{Name: "workers", Handler: handler(0), Concurrency: 2})
	e.start(t, consumers.Config{Name: "workers", Handler: handler(1), Concurrency: 2})
	const n = 200
	var last uint64
	for i := range n {
		last = e.publish(t, fmt.Sprintf("msg_%d", i), "agent.updated", strconv.Itoa(i))
	}
	natstest.WaitDone(t, e.js, stream.Raw, "workers", last)
	if overlap.Load() != 0 {
		t.Fatalf("%d events were handled by both instances at once", overlap.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != n {
		t.Fatalf("%d distinct events handled, want %d", len(handled), n)
	}
	for id, c := range handled {
		if c != 1 {
			t.Errorf("%s handled %d times", id, c)
		}
	}
	if byInst[0].Load() == 0 || byInst[1].Load() == 0 {
		t.Fatalf("work not shared: %d / %d", byInst[0].Load(), byInst[1].Load())
	}
	t.Logf("instance split %d / %d", byInst[0].Load(), byInst[1].Load())
}

func TestFailingHandlerRetriesWithBackoffThenDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var (
		mu    sync.Mutex
		times []time.Time
	)
	backoff := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}
	e.start(t, consumers.Config{Name: "flaky", MaxDeliver: 3, Backoff: backoff, Handler: func(_ context.Context, m *consumers.Message) error {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return errors.New("crm is down")
	}})
	seq := e.publish(t, "msg_fail", "inspection.confirmed", "42")
	// Terminated after the dead letter is stored: settled, nothing pending,
	// so no further delivery can come.
	natstest.WaitDone(t, e.js, stream.Raw, "flaky", seq)
	dls, err := admin.New(e.js).DeadLetters(context.Background(), "flaky", 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %v, %v", dls, err)
	}
	mu.Lock()
	if len(times) != 3 {
		t.Fatalf("handler ran %d times, want 3 (MaxDeliver)", len(times))
	}
	for i, want := range backoff {
		if gap := times[i+1].Sub(times[i]); gap < want {
			t.Errorf("gap before delivery %d = %s, want at least %s", i+2, gap, want)
		}
	}
	mu.Unlock()
	d := dls[0]
	if d.Subject != "spectora.dlq.flaky.inspection.confirmed" || d.Group != "flaky" || d.OriginalSubject != "spectora.inspection.confirmed" ||
		d.OriginalStream != stream.Raw || d.OriginalSequence != seq || d.Deliveries != 3 || d.Reason != stream.ReasonMaxDeliveries ||
		d.Error != "crm is down" || d.Time.IsZero() || d.Header.Get(stream.HeaderEventType) != "inspection.confirmed" {
		t.Fatalf("dead letter = %+v", d)
	}
	for outcome, want := range map[string]float64{"retry": 2, "dead_lettered": 1, "ack": 0} {
		if got := natstest.Metric(t, e.reg, "spectora_consumer_messages_total", map[string]string{"group": "flaky", "outcome": outcome}); got != want {
			t.Errorf("messages_total{outcome=%s} = %g, want %g", outcome, got, want)
		}
	}
}

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var runs atomic.Int64
	e.start(t, consumers.Config{Name: "strict", MaxDeliver: 5, Handler: func(_ context.Context, m *consumers.Message) error {
		runs.Add(1)
		return consumers.Permanent(errors.New("record shape not understood"))
	}})
	seq := e.publish(t, "msg_perm", "client.created", "7")
	natstest.WaitDone(t, e.js, stream.Raw, "strict", seq)
	dls, err := admin.New(e.js).DeadLetters(context.Background(), "strict", 0)
	if err != nil || len(dls) != 1 || dls[0].Reason != stream.ReasonPermanent || dls[0].Deliveries != 1 {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	if runs.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", runs.Load())
	}
}

func TestUndecodableMessageIsDeadLetteredWithoutRunningTheHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRecorder()
	e.start(t, consumers.Config{Name: "picky", Handler: r.handler})
	msg := natstest.Event("msg_bad", "inspection.confirmed", "1")
	msg.Data = []byte{0xff, 0xff, 0xff} // not a WebhookEvent
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitDone(t, e.js, stream.Raw, "picky", ack.Sequence)
	dls, _ := admin.New(e.js).DeadLetters(context.Background(), "picky", 0)
	if len(dls) != 1 || dls[0].Reason != stream.ReasonPermanent || r.n.Load() != 0 {
		t.Fatalf("dead letters %+v, handler ran %d times", dls, r.n.Load())
	}
}

func TestPanicIsRecoveredAndRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var runs atomic.Int64
	e.start(t, consumers.Config{Name: "shaky", Backoff: []time.Duration{10 * time.Millisecond}, Handler: func(context.Context, *consumers.Message) error {
		if runs.Add(1) == 1 {
			panic("nil map")
		}
		return nil
	}})
	seq := e.publish(t, "msg_p", "inspection.confirmed", "1")
	natstest.WaitDone(t, e.js, stream.Raw, "shaky", seq)
	if runs.Load() != 2 {
		t.Fatalf("handler ran %d times, want 2 (panic, then success)", runs.Load())
	}
}

func TestMiddlewareWrapsTheHandlerInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var (
		mu    sync.Mutex
		trail []string
	)
	note := func(s string) { mu.Lock(); trail = append(trail, s); mu.Unlock() }
	mw := func(name string) consumers.Middleware {
		return func(next consumers.Handler) consumers.Handler {
			return func(ctx context.Context, m *consumers.Message) error {
				note(name + ">")
				m.OnSettled(func(o consumers.Outcome) { note(name + ":" + string(o)) })
				err := next(ctx, m)
				note("<" + name)
				return err
			}
		}
	}
	e.start(t, consumers.Config{Name: "chain", Middleware: []consumers.Middleware{mw("a"), mw("b")},
		Handler: func(context.Context, *consumers.Message) error { note("handler"); return nil }})
	seq := e.publish(t, "msg_c", "inspection.confirmed", "1")
	natstest.WaitDone(t, e.js, stream.Raw, "chain", seq)
	eventually(t, "settled callbacks", func() bool { mu.Lock(); defer mu.Unlock(); return len(trail) == 7 })
	mu.Lock()
	defer mu.Unlock()
	want := []string{"a>", "b>", "handler", "<b", "<a", "b:ack", "a:ack"}
	if fmt.Sprint(trail) != fmt.Sprint(want) {
		t.Fatalf("trail %v, want %v", trail, want)
	}
}

func TestTimeoutMiddlewareCancelsASlowHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var runs atomic.Int64
	e.start(t, consumers.Config{Name: "bounded", Backoff: []time.Duration{10 * time.Millisecond},
		Middleware: []consumers.Middleware{consumers.Timeout(50 * time.Millisecond)},
		Handler: func(ctx context.Context, _ *consumers.Message) error {
			if runs.Add(1) == 1 {
				<-ctx.Done() // the first call hangs until the timeout
				return ctx.Err()
			}
			return nil
		}})
	seq := e.publish(t, "msg_t", "inspection.confirmed", "1")
	natstest.WaitDone(t, e.js, stream.Raw, "bounded", seq)
	if runs.Load() != 2 {
		t.Fatalf("handler ran %d times, want 2 (timed out, then success)", runs.Load())
	}
}

func TestRedriveBringsTheDeadLetterBackToItsGroupOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var fail atomic.Bool
	fail.Store(true)
	fixed, other := newRecorder(), newRecorder()
	e.start(t, consumers.Config{Name: "crm", Handler: func(ctx context.Context, m *consumers.Message) error {
		if fail.Load() {
			return consumers.Permanent(errors.New("bug"))
		}
		if m.Subject != "spectora.inspection.confirmed" {
			return fmt.Errorf("redriven message has subject %q", m.Subject)
		}
		return fixed.handler(ctx, m)
	}})
	e.start(t, consumers.Config{Name: "billing", Handler: other.handler})
	seq := e.publish(t, "msg_r", "inspection.confirmed", "1")
	natstest.WaitDone(t, e.js, stream.Raw, "crm", seq)
	natstest.WaitDone(t, e.js, stream.Raw, "billing", seq)
	adm := admin.New(e.js)
	dls, err := adm.DeadLetters(context.Background(), "crm", 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %v, %v", dls, err)
	}
	fail.Store(false) // the bug is fixed and deployed
	ack, err := adm.Redrive(context.Background(), dls[0].Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("spectora.redrive.crm.%d", dls[0].Sequence); ack.Stream != stream.Raw {
		t.Fatalf("redriven into %s, want %s on %s", ack.Stream, stream.Raw, want)
	}
	natstest.WaitDone(t, e.js, stream.Raw, "crm", ack.Sequence)
	if fixed.count("msg_r") != 1 {
		t.Fatalf("crm processed the redriven event %d times", fixed.count("msg_r"))
	}
	if left, _ := adm.DeadLetters(context.Background(), "", 0); len(left) != 0 {
		t.Fatalf("dead letter still there: %+v", left)
	}
	// The server never offers the redrive to billing: its filter doesn't
	// match spectora.redrive.crm.<seq>.
	info := natstest.ConsumerInfo(t, e.js, stream.Raw, "billing")
	if info.NumPending != 0 || info.Delivered.Stream != seq || other.n.Load() != 1 {
		t.Fatalf("billing: pending %d, delivered through %d, handled %d; want 0, %d, 1",
			info.NumPending, info.Delivered.Stream, other.n.Load(), seq)
	}
	if _, err := adm.Redrive(context.Background(), dls[0].Sequence); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("second redrive: %v, want ErrNotFound", err)
	}
}

func TestRedrivenLetterThatFailsAgainKeepsItsOrigin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(t, consumers.Config{Name: "stubborn", Handler: func(context.Context, *consumers.Message) error {
		return consumers.Permanent(errors.New("still broken"))
	}})
	seq := e.publish(t, "msg_o", "agent.updated", "3")
	natstest.WaitDone(t, e.js, stream.Raw, "stubborn", seq)
	adm := admin.New(e.js)
	dls, _ := adm.DeadLetters(context.Background(), "stubborn", 0)
	if len(dls) != 1 {
		t.Fatalf("dead letters %+v", dls)
	}
	ack, err := adm.Redrive(context.Background(), dls[0].Sequence)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitDone(t, e.js, stream.Raw, "stubborn", ack.Sequence)
	again, _ := adm.DeadLetters(context.Background(), "stubborn", 0)
	if len(again) != 1 || again[0].OriginalSequence != seq || again[0].OriginalStream != stream.Raw ||
		again[0].OriginalSubject != "spectora.agent.updated" || again[0].Subject != "spectora.dlq.stubborn.agent.updated" {
		t.Fatalf("second dead letter %+v: want the original %s#%d", again, stream.Raw, seq)
	}
}

func TestReplayReprocessesFromATime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRecorder()
	e.start(t, consumers.Config{Name: "report", Handler: r.handler})
	var last uint64
	for i := range 3 {
		last = e.publish(t, fmt.Sprintf("old_%d", i), "inspection.created", strconv.Itoa(i))
	}
	natstest.WaitDone(t, e.js, stream.Raw, "report", last)
	since := time.Now()
	for i := range 2 {
		last = e.publish(t, fmt.Sprintf("new_%d", i), "inspection.created", strconv.Itoa(i))
	}
	natstest.WaitDone(t, e.js, stream.Raw, "report", last)
	adm := admin.New(e.js)
	name, seq, err := adm.Replay(context.Background(), "", "report", since, 0)
	if err != nil || name != stream.Raw || seq != 4 {
		t.Fatalf("replay starts at %s#%d (%v), want %s#4", name, seq, err, stream.Raw)
	}
	eventually(t, "the two newer events again", func() bool { return r.count("new_0") == 2 && r.count("new_1") == 2 })
	natstest.WaitDone(t, e.js, stream.Raw, "report", last)
	if r.count("old_0") != 1 {
		t.Fatalf("old event replayed too")
	}
	if _, _, err := adm.Replay(context.Background(), stream.Raw, "report", time.Time{}, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "old events again", func() bool { return r.count("old_0") == 2 })
	if _, _, err := adm.Replay(context.Background(), "", "nobody", since, 0); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("replay of unknown group: %v", err)
	}
}

func TestLongHandlerSendsInProgress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var runs atomic.Int64
	e.start(t, consumers.Config{Name: "slow", AckWait: time.Second, Handler: func(ctx context.Context, m *consumers.Message) error {
		runs.Add(1)
		time.Sleep(2500 * time.Millisecond) // 2.5× the ack wait
		return nil
	}})
	seq := e.publish(t, "msg_slow", "inspection.published", "9")
	natstest.WaitDone(t, e.js, stream.Raw, "slow", seq)
	if runs.Load() != 1 {
		t.Fatalf("handler ran %d times: InProgress did not hold the message", runs.Load())
	}
}

// Shutting down in the middle of a batch loses nothing: after a restart on the
// same store every stored event is acknowledged by every group. Messages the
// server sent while the client was unsubscribing come back after the ack wait
// (2 s here, 30 s by default).
func TestShutdownMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	store := t.TempDir()
	e := newEnvAt(t, store)
	const n = 300
	for i := range n {
		e.publish(t, fmt.Sprintf("msg_%d", i), "inspection.confirmed", strconv.Itoa(i))
	}
	seen := map[string]*recorder{"a": newRecorder(), "b": newRecorder()}
	slow := func(r *recorder) consumers.Handler {
		return func(ctx context.Context, m *consumers.Message) error {
			time.Sleep(time.Millisecond)
			return r.handler(ctx, m)
		}
	}
	var runs []*natstest.Runner
	for name, r := range seen {
		runs = append(runs, e.start(t, consumers.Config{Name: name, Handler: slow(r), Concurrency: 4, AckWait: 2 * time.Second, DrainTimeout: 5 * time.Second}))
	}
	eventually(t, "some progress", func() bool { return seen["a"].n.Load() > 20 && seen["b"].n.Load() > 20 })
	for _, r := range runs {
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("before restart: a=%d b=%d of %d", seen["a"].n.Load(), seen["b"].n.Load(), n)
	e.srv.Shutdown()
	e.srv.WaitForShutdown()

	e2 := newEnvAt(t, store)
	for name, r := range seen {
		e2.start(t, consumers.Config{Name: name, Handler: r.handler, AckWait: 2 * time.Second})
	}
	for name, r := range seen {
		natstest.WaitDone(t, e2.js, stream.Raw, name, n)
		for i := range n {
			if r.count(fmt.Sprintf("msg_%d", i)) == 0 {
				t.Errorf("group %s never handled msg_%d", name, i)
			}
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	h := func(context.Context, *consumers.Message) error { return nil }
	tests := []struct {
		name string
		cfg  consumers.Config
	}{
		{"no name", consumers.Config{Handler: h}},
		{"bad name", consumers.Config{Name: "Bad.Name", Handler: h}},
		{"no handler", consumers.Config{Name: "g"}},
		{"bad stream", consumers.Config{Name: "g", Handler: h, Stream: "OTHER"}},
		{"concurrency", consumers.Config{Name: "g", Handler: h, Concurrency: -1}},
		{"ack wait", consumers.Config{Name: "g", Handler: h, AckWait: time.Millisecond}},
		{"negative backoff", consumers.Config{Name: "g", Handler: h, Backoff: []time.Duration{-time.Second}}},
		{"filter takes other groups' redrives", consumers.Config{Name: "g", Handler: h, Subjects: []string{"spectora.>"}}},
		{"enriched filter takes redrives", consumers.Config{Name: "g", Handler: h, Stream: stream.Enriched, Subjects: []string{"spectora.enriched.>"}}},
		{"redrive wildcard", consumers.Config{Name: "g", Handler: h, Subjects: []string{"spectora.redrive.*.*"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := consumers.NewGroup(tt.cfg, nil); !errors.Is(err, consumers.ErrInvalidConfig) {
				t.Fatalf("NewGroup = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestConsumerFiltersIncludeOnlyItsOwnRedrives(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g, err := consumers.NewGroup(consumers.Config{Name: "crm", Handler: newRecorder().handler,
		Subjects: []string{"spectora.inspection.*", "spectora.redrive.crm.*"}}, e.js)
	if err != nil {
		t.Fatalf("a filter naming the group's own redrives is fine: %v", err)
	}
	got := g.ConsumerConfig().FilterSubjects
	want := []string{"spectora.inspection.*", "spectora.redrive.crm.*"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("filters %v, want %v", got, want)
	}
}

// Events the stream's age limit removes before the group processed them are
// reported, both one held by a slow handler and ones never delivered.
func TestEvictionBeforeProcessingIsReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := stream.DefaultLimits()
	l.MaxAge, l.Duplicates = 2*time.Second, time.Second
	if _, err := e.js.UpdateStream(context.Background(), stream.RawConfig(l)); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	e.start(t, consumers.Config{Name: "stuck", Concurrency: 1, AckWait: 2 * time.Second, WatchInterval: 200 * time.Millisecond,
		Handler: func(ctx context.Context, _ *consumers.Message) error {
			select { // a handler that never finishes in time
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}})
	for i := range 3 {
		e.publish(t, fmt.Sprintf("msg_e%d", i), "inspection.confirmed", strconv.Itoa(i))
	}
	for _, how := range []string{"unacked", "undelivered"} {
		natstest.Eventually(t, 15*time.Second, how+" eviction reported", func() bool {
			return natstest.Metric(t, e.reg, "spectora_consumer_evicted_total", map[string]string{"group": "stuck", "how": how}) >= 1
		})
	}
}

func TestALostPullRequestDoesNotStallTheGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy := natstest.NewProxy(t, e.srv)
	proxy.Watch("$JS.API.CONSUMER.MSG.NEXT.")
	nc, err := nats.Connect(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var logs natstest.Buffer
	rec := newRecorder()
	g, err := consumers.NewGroup(consumers.Config{Name: "tail", Handler: rec.handler, Concurrency: 4,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}, js)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, g)
	// With 4 handlers the client asks for 4 messages, and for more once
	// fewer than 2 are due.
	e.publish(t, "evt_1", "inspection.confirmed", "1")
	eventually(t, "the first event", func() bool { return rec.n.Load() == 1 })
	// The pull the client sends after the 3rd event is lost on its way: the
	// client counts 4 due, the server holds 1 (for the 4th event). This is
	// the state the groups were seen in under load, whatever its cause.
	proxy.DropNext("$JS.API.CONSUMER.MSG.NEXT.", 1)
	for i := 2; i <= 8; i++ {
		e.publish(t, fmt.Sprintf("evt_%d", i), "inspection.confirmed", strconv.Itoa(i))
	}
	eventually(t, "the lost pull", func() bool { return proxy.Dropped() == 1 })
	// Events 5 to 8 come once the client misses the server's heartbeats
	// and pulls again, and says so.
	eventually(t, "all 8 events and the log of the second pull", func() bool {
		return rec.n.Load() == 8 && strings.Contains(logs.String(), "no pull heartbeat; pulling again")
	})
	// It misses them after 2 s, not after the client's default 30 s: every
	// pull asks for a heartbeat each second.
	pulls := proxy.Seen()
	if len(pulls) < 3 {
		t.Fatalf("%d pull requests seen, want the first, the lost one and the one after the missed heartbeats", len(pulls))
	}
	for _, b := range pulls {
		var req struct {
			Heartbeat time.Duration `json:"idle_heartbeat"`
		}
		if err := json.Unmarshal(b, &req); err != nil || req.Heartbeat != time.Second {
			t.Fatalf("pull request %s: idle heartbeat %s (%v), want 1s", b, req.Heartbeat, err)
		}
	}
}
