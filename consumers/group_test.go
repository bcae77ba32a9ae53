package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
)

func TestSeparateGroupsEachGetEveryEvent(t *testing.T) {
	e := newEnv(t)
	a, b := newRecorder(), newRecorder()
	e.start(t, Config{Name: "crm", Handler: a.handler})
	e.start(t, Config{Name: "billing", Handler: b.handler})
	for i := range 20 {
		e.publish(t, fmt.Sprintf("msg_%d", i), "inspection.confirmed", strconv.Itoa(i))
	}
	eventually(t, "both groups see 20", func() bool { return a.n.Load() == 20 && b.n.Load() == 20 })
	for i := range 20 {
		if a.count(fmt.Sprintf("msg_%d", i)) != 1 || b.count(fmt.Sprintf("msg_%d", i)) != 1 {
			t.Fatalf("msg_%d seen %d/%d times", i, a.count(fmt.Sprintf("msg_%d", i)), b.count(fmt.Sprintf("msg_%d", i)))
		}
	}
}

func TestInstancesOfOneGroupSplitTheWork(t *testing.T) {
	e := newEnv(t)
	var (
		mu       sync.Mutex
		inFlight = map[string]bool{}
		handled  = map[string]int{}
		byInst   [2]atomic.Int64
		overlap  atomic.Int64
	)
	handler := func(inst int) Handler {
		return func(_ context.Context, m *Message) error {
			id := m.Event.GetId()
			mu.Lock()
			if inFlight[id] {
				overlap.Add(1)
			}
			inFlight[id] = true
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			delete(inFlight, id)
			handled[id]++
			mu.Unlock()
			byInst[inst].Add(1)
			return nil
		}
	}
	e.start(t, Config{Name: "workers", Handler: handler(0), Concurrency: 2})
	e.start(t, Config{Name: "workers", Handler: handler(1), Concurrency: 2})
	const n = 200
	for i := range n {
		e.publish(t, fmt.Sprintf("msg_%d", i), "agent.updated", strconv.Itoa(i))
	}
	eventually(t, "200 handled", func() bool { return byInst[0].Load()+byInst[1].Load() == n })
	if overlap.Load() != 0 {
		t.Fatalf("%d events were handled by both instances at once", overlap.Load())
	}
	mu.Lock()
	defer mu.Unlock()
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
	e := newEnv(t)
	var (
		mu    sync.Mutex
		times []time.Time
	)
	backoff := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}
	e.start(t, Config{Name: "flaky", MaxDeliver: 3, Backoff: backoff, Handler: func(_ context.Context, m *Message) error {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return errors.New("crm is down")
	}})
	seq := e.publish(t, "msg_fail", "inspection.confirmed", "42")
	dlq, err := OpenDeadLetters(context.Background(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	var dls []DeadLetter
	eventually(t, "a dead letter", func() bool {
		dls, err = dlq.List(context.Background(), "flaky", 0)
		return err == nil && len(dls) == 1
	})
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
		d.OriginalStream != natsx.RawStream || d.OriginalSequence != seq || d.Deliveries != 3 || d.Reason != "max_deliveries" ||
		d.Error != "crm is down" || d.Time.IsZero() || d.Header.Get(natsx.HeaderEventType) != "inspection.confirmed" {
		t.Fatalf("dead letter = %+v", d)
	}
	// The original is terminated: no further deliveries.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 3 {
		t.Fatalf("handler ran %d times after dead-lettering", len(times))
	}
	if got := e.metrics.processed.WithLabelValues("flaky", "dead_lettered"); got == nil {
		t.Fatal("no metric")
	}
}

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	e := newEnv(t)
	var runs atomic.Int64
	e.start(t, Config{Name: "strict", MaxDeliver: 5, Handler: func(_ context.Context, m *Message) error {
		runs.Add(1)
		return Permanent(errors.New("record shape not understood"))
	}})
	e.publish(t, "msg_perm", "client.created", "7")
	dlq, _ := OpenDeadLetters(context.Background(), e.js)
	eventually(t, "a dead letter", func() bool {
		dls, err := dlq.List(context.Background(), "strict", 0)
		return err == nil && len(dls) == 1 && dls[0].Reason == "permanent" && dls[0].Deliveries == 1
	})
	time.Sleep(200 * time.Millisecond)
	if runs.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", runs.Load())
	}
}

func TestRedriveBringsTheDeadLetterBackToItsGroupOnly(t *testing.T) {
	e := newEnv(t)
	var fail atomic.Bool
	fail.Store(true)
	fixed := newRecorder()
	other := newRecorder()
	e.start(t, Config{Name: "crm", Handler: func(ctx context.Context, m *Message) error {
		if fail.Load() {
			return Permanent(errors.New("bug"))
		}
		if m.Subject != "spectora.inspection.confirmed" {
			return fmt.Errorf("redriven message has subject %q", m.Subject)
		}
		return fixed.handler(ctx, m)
	}})
	e.start(t, Config{Name: "billing", Handler: other.handler})
	e.publish(t, "msg_r", "inspection.confirmed", "1")
	dlq, _ := OpenDeadLetters(context.Background(), e.js)
	var dls []DeadLetter
	eventually(t, "a dead letter", func() bool {
		dls, _ = dlq.List(context.Background(), "crm", 0)
		return len(dls) == 1
	})
	eventually(t, "billing handled it", func() bool { return other.n.Load() == 1 })
	fail.Store(false) // the bug is fixed and deployed
	if _, err := dlq.Redrive(context.Background(), dls[0].Sequence); err != nil {
		t.Fatal(err)
	}
	eventually(t, "crm processed the redriven event", func() bool { return fixed.count("msg_r") == 1 })
	if left, _ := dlq.List(context.Background(), "", 0); len(left) != 0 {
		t.Fatalf("dead letter still there: %+v", left)
	}
	time.Sleep(200 * time.Millisecond)
	if other.n.Load() != 1 {
		t.Fatalf("billing saw the redriven event too (%d)", other.n.Load())
	}
	if _, err := dlq.Redrive(context.Background(), dls[0].Sequence); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second redrive: %v, want ErrNotFound", err)
	}
}

func TestReplayReprocessesFromATime(t *testing.T) {
	e := newEnv(t)
	r := newRecorder()
	e.start(t, Config{Name: "report", Handler: r.handler})
	for i := range 3 {
		e.publish(t, fmt.Sprintf("old_%d", i), "inspection.created", strconv.Itoa(i))
	}
	eventually(t, "3 handled", func() bool { return r.n.Load() == 3 })
	time.Sleep(50 * time.Millisecond)
	since := time.Now()
	time.Sleep(50 * time.Millisecond)
	for i := range 2 {
		e.publish(t, fmt.Sprintf("new_%d", i), "inspection.created", strconv.Itoa(i))
	}
	eventually(t, "5 handled", func() bool { return r.n.Load() == 5 })
	seq, err := Replay(context.Background(), e.js, natsx.RawStream, "report", since, 0)
	if err != nil {
		t.Fatal(err)
	}
	if seq != 4 {
		t.Fatalf("replay starts at %d, want 4", seq)
	}
	eventually(t, "the two newer events again", func() bool { return r.count("new_0") == 2 && r.count("new_1") == 2 })
	if r.count("old_0") != 1 {
		t.Fatalf("old event replayed too")
	}
	// From a sequence: everything again.
	if _, err := Replay(context.Background(), e.js, natsx.RawStream, "report", time.Time{}, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "old events again", func() bool { return r.count("old_0") == 2 })
	if _, err := Replay(context.Background(), e.js, natsx.RawStream, "nobody", since, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replay of unknown group: %v", err)
	}
}

func TestLongHandlerSendsInProgress(t *testing.T) {
	e := newEnv(t)
	var runs atomic.Int64
	e.start(t, Config{Name: "slow", AckWait: time.Second, Handler: func(ctx context.Context, m *Message) error {
		runs.Add(1)
		time.Sleep(2500 * time.Millisecond) // 2.5× the ack wait
		return nil
	}})
	e.publish(t, "msg_slow", "inspection.published", "9")
	eventually(t, "acked", func() bool {
		cons, err := e.js.Consumer(context.Background(), natsx.RawStream, "slow")
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && info.AckFloor.Stream == 1
	})
	if runs.Load() != 1 {
		t.Fatalf("handler ran %d times: InProgress did not hold the message", runs.Load())
	}
}

// Shutting down in the middle of a batch loses nothing: after a restart on the
// same store every stored event is acknowledged by every group. Messages the
// server sent while the client was unsubscribing come back after the ack wait
// (2 s here, 30 s by default).
func TestShutdownMidBatchLosesNothing(t *testing.T) {
	store := t.TempDir()
	e := newEnvAt(t, store)
	const n = 300
	for i := range n {
		e.publish(t, fmt.Sprintf("msg_%d", i), "inspection.confirmed", strconv.Itoa(i))
	}
	seen := map[string]*recorder{"a": newRecorder(), "b": newRecorder()}
	slow := func(r *recorder) Handler {
		return func(ctx context.Context, m *Message) error {
			time.Sleep(time.Millisecond)
			return r.handler(ctx, m)
		}
	}
	var groups []*Group
	for name, r := range seen {
		g, err := NewGroup(Config{Name: name, Handler: slow(r), Concurrency: 4, AckWait: 2 * time.Second}, e.js, e.metrics, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	eventually(t, "some progress", func() bool { return seen["a"].n.Load() > 20 && seen["b"].n.Load() > 20 })
	for _, g := range groups {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := g.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	t.Logf("before restart: a=%d b=%d of %d", seen["a"].n.Load(), seen["b"].n.Load(), n)
	e.nc.Close()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()

	e2 := newEnvAt(t, store)
	for name, r := range seen {
		e2.start(t, Config{Name: name, Handler: r.handler, AckWait: 2 * time.Second})
	}
	for name := range seen {
		eventually(t, "group "+name+" acked everything", func() bool {
			cons, err := e2.js.Consumer(context.Background(), natsx.RawStream, name)
			if err != nil {
				return false
			}
			info, err := cons.Info(context.Background())
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == n
		})
	}
	for name, r := range seen {
		for i := range n {
			if r.count(fmt.Sprintf("msg_%d", i)) == 0 {
				t.Errorf("group %s never handled msg_%d", name, i)
			}
		}
	}
}

func TestBroadFilterSkipsOtherGroupsRedrives(t *testing.T) {
	if got := redriveFor("spectora.redrive.crm"); got != "crm" {
		t.Fatal(got)
	}
	if got := redriveFor("spectora.enriched.redrive.audit"); got != "audit" {
		t.Fatal(got)
	}
	if got := redriveFor("spectora.inspection.confirmed"); got != "" {
		t.Fatal(got)
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, tt := range []struct {
		filter, subject string
		want            bool
	}{
		{"spectora.*.*", "spectora.redrive.crm", true},
		{"spectora.inspection.*", "spectora.redrive.crm", false},
		{"spectora.>", "spectora.redrive.crm", true},
		{"spectora.enriched.*.*", "spectora.enriched.redrive.audit", true},
		{"spectora.*", "spectora.a.b", false},
		{"spectora.a.b", "spectora.a.b", true},
	} {
		if got := subjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("subjectMatches(%q, %q) = %v", tt.filter, tt.subject, got)
		}
	}
}
