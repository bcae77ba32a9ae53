package consumers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

func TestThreeGroupsOneEventOneAPICall(t *testing.T) {
	e := newEnv(t)
	api := newFakeAPI(t)
	api.latency = 50 * time.Millisecond // the three look-ups overlap
	enr := NewEnricher(api.client(t, e.metrics), e.kv, e.metrics, Tracing{}, nil)
	var (
		mu   sync.Mutex
		recs = map[string]Record{}
	)
	for _, name := range []string{"crm", "billing", "reports"} {
		e.start(t, Config{Name: name, Handler: func(ctx context.Context, m *Message) error {
			rec, err := enr.Record(ctx, m.Event)
			if err != nil {
				return err
			}
			mu.Lock()
			recs[name] = rec
			mu.Unlock()
			return nil
		}})
	}
	e.publish(t, "msg_1", "inspection.confirmed", "42")
	eventually(t, "three groups enriched", func() bool { mu.Lock(); defer mu.Unlock(); return len(recs) == 3 })
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("API called %d times, want 1", n)
	}
	for name, rec := range recs {
		if rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND || rec.Path != "/v2/inspections/42" || !json.Valid(rec.Body) {
			t.Fatalf("%s got %+v", name, rec)
		}
	}
	// A later group on the same event is served from the shared cache.
	late := newRecorder()
	e.start(t, Config{Name: "late", Handler: func(ctx context.Context, m *Message) error {
		if _, err := enr.Record(ctx, m.Event); err != nil {
			return err
		}
		return late.handler(ctx, m)
	}})
	eventually(t, "late group", func() bool { return late.n.Load() == 1 })
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("API called %d times after a cached look-up", n)
	}
}

func TestCachedRecordOlderThanTheEventIsRefetched(t *testing.T) {
	e := newEnv(t)
	api := newFakeAPI(t)
	enr := NewEnricher(api.client(t, e.metrics), e.kv, e.metrics, Tracing{}, nil)
	ev := &spectorav1.WebhookEvent{Resource: "agent", Action: "updated", RecordId: "5", ReceivedAt: timestamppb.New(time.Now().Add(-time.Minute))}
	if _, err := enr.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	// Same record, a newer event: the cached copy predates it.
	ev2 := proto.Clone(ev).(*spectorav1.WebhookEvent)
	ev2.ReceivedAt = timestamppb.New(time.Now().Add(time.Second))
	if _, err := enr.Record(context.Background(), ev2); err != nil {
		t.Fatal(err)
	}
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("API called %d times, want 2", n)
	}
	// The older event is happy with the newer copy.
	if _, err := enr.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("API called %d times, want still 2", n)
	}
}

func TestAPIClientHonours429AndRetries5xx(t *testing.T) {
	e := newEnv(t)
	t.Run("short Retry-After waited in process", func(t *testing.T) {
		api := newFakeAPI(t)
		api.fail429.Store(1)
		api.retryHdr = "1"
		start := time.Now()
		rec, err := api.client(t, e.metrics).Fetch(context.Background(), "inspection", "1")
		if err != nil || rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND {
			t.Fatalf("Fetch = %+v, %v", rec, err)
		}
		if api.calls.Load() != 2 || time.Since(start) < time.Second {
			t.Fatalf("calls %d after %s: Retry-After not honoured", api.calls.Load(), time.Since(start))
		}
		api.mu.Lock()
		defer api.mu.Unlock()
		if gap := api.callTimes[1].Sub(api.callTimes[0]); gap < 900*time.Millisecond {
			t.Fatalf("second call %s after the 429", gap)
		}
	})
	t.Run("long Retry-After goes back to the queue", func(t *testing.T) {
		api := newFakeAPI(t)
		api.fail429.Store(1)
		api.retryHdr = "120"
		_, err := api.client(t, e.metrics).Fetch(context.Background(), "inspection", "1")
		var ra *RetryAfterError
		if !errors.As(err, &ra) || ra.Delay != 120*time.Second {
			t.Fatalf("err = %v, want RetryAfterError of 120s", err)
		}
		if d := Decide(err, 1, 5, []time.Duration{time.Second}); d.Action != ActionRetry || d.Delay != 120*time.Second {
			t.Fatalf("Decide = %+v", d)
		}
	})
	t.Run("5xx retried with backoff", func(t *testing.T) {
		api := newFakeAPI(t)
		api.fail500.Store(2)
		rec, err := api.client(t, e.metrics).Fetch(context.Background(), "agent", "3")
		if err != nil || rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND || rec.Path != "/v2/connections/3" {
			t.Fatalf("Fetch = %+v, %v", rec, err)
		}
		if api.calls.Load() != 3 {
			t.Fatalf("calls %d, want 3", api.calls.Load())
		}
	})
	t.Run("5xx forever is a retryable error", func(t *testing.T) {
		api := newFakeAPI(t)
		api.fail500.Store(100)
		_, err := api.client(t, e.metrics).Fetch(context.Background(), "agent", "3")
		if !errors.Is(err, ErrAPI) || errors.Is(err, ErrPermanent) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("wrong token is not permanent", func(t *testing.T) {
		api := newFakeAPI(t)
		c, _ := NewAPIClient(APIConfig{BaseURL: api.URL, Token: "wrong"}, e.metrics, nil)
		_, err := c.Fetch(context.Background(), "agent", "3")
		if !errors.Is(err, ErrAPI) || errors.Is(err, ErrPermanent) || api.calls.Load() != 1 {
			t.Fatalf("err = %v after %d calls", err, api.calls.Load())
		}
	})
}

func TestRecordGoneUpstreamIsNotRetried(t *testing.T) {
	e := newEnv(t)
	api := newFakeAPI(t)
	api.gone["/v2/inspections/77"] = true
	enr := NewEnricher(api.client(t, e.metrics), e.kv, e.metrics, Tracing{}, nil)
	e.start(t, Config{Name: EnricherGroup, Handler: EnrichHandler(enr, e.js)})
	e.publish(t, "msg_gone", "inspection.confirmed", "77")
	e.publish(t, "msg_del", "inspection.deleted", "78")
	enriched := readEnriched(t, e, 2)
	if enriched["msg_gone"].GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_GONE {
		t.Fatalf("gone record status %v", enriched["msg_gone"].GetRecordStatus())
	}
	if enriched["msg_del"].GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED {
		t.Fatalf("deleted event status %v", enriched["msg_del"].GetRecordStatus())
	}
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("API called %d times, want 1 (404 once, deleted never)", n)
	}
}

// readEnriched reads n messages from SPECTORA_ENRICHED, keyed by svix ID.
func readEnriched(t *testing.T, e *env, n int) map[string]*spectorav1.EnrichedEvent {
	t.Helper()
	s, err := e.js.Stream(context.Background(), natsx.EnrichedStream)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "enriched events", func() bool {
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs >= uint64(n)
	})
	out := map[string]*spectorav1.EnrichedEvent{}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev spectorav1.EnrichedEvent
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(natsx.HeaderContentType) != natsx.ContentTypeEnrichedEvent {
			t.Fatalf("content type %q", m.Header.Get(natsx.HeaderContentType))
		}
		if m.Subject != "spectora.enriched."+ev.GetEvent().GetResource()+"."+ev.GetEvent().GetAction() {
			t.Fatalf("subject %q", m.Subject)
		}
		out[ev.GetEvent().GetId()] = &ev
	}
	return out
}

func TestEnricherAndAuditGroupsEndToEnd(t *testing.T) {
	e := newEnv(t)
	api := newFakeAPI(t)
	enr := NewEnricher(api.client(t, e.metrics), e.kv, e.metrics, Tracing{}, nil)
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	audit, err := OpenAuditLog(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	e.start(t, Config{Name: EnricherGroup, Handler: EnrichHandler(enr, e.js)})
	e.start(t, Config{Name: AuditGroup, Stream: natsx.EnrichedStream, Handler: audit.Handler()})
	e.publish(t, "msg_a", "inspection.confirmed", "42")
	e.publish(t, "msg_b", "agent.updated", "7")
	enriched := readEnriched(t, e, 2)
	got := enriched["msg_a"]
	if got.GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_FOUND || got.GetRecordPath() != "/v2/inspections/42" ||
		got.GetSourceSequence() == 0 || got.GetFetchedAt() == nil || got.GetEvent().GetRecordId() != "42" {
		t.Fatalf("enriched = %v", got)
	}
	var doc struct {
		Data struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"data"`
	}
	if err := json.Unmarshal(got.GetRecord(), &doc); err != nil || doc.Data.ID != "42" || doc.Data.Type != "inspections" {
		t.Fatalf("record %s (%v)", got.GetRecord(), err)
	}
	var lines []AuditEntry
	eventually(t, "two audit lines", func() bool {
		lines = nil
		f, err := os.Open(auditPath)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var a AuditEntry
			if json.Unmarshal(sc.Bytes(), &a) == nil {
				lines = append(lines, a)
			}
		}
		return len(lines) == 2
	})
	byID := map[string]AuditEntry{}
	for _, l := range lines {
		byID[l.ID] = l
	}
	if a := byID["msg_a"]; a.RecordStatus != "found" || len(a.Record) == 0 || a.Subject != "spectora.enriched.inspection.confirmed" || a.RecordID != "42" {
		t.Fatalf("audit line %+v", a)
	}
	// Redelivery of the raw event does not duplicate the enriched one.
	if _, err := e.js.ResetConsumerToSequence(context.Background(), natsx.RawStream, EnricherGroup, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	s, _ := e.js.Stream(context.Background(), natsx.EnrichedStream)
	info, _ := s.Info(context.Background())
	if info.State.Msgs != 2 {
		t.Fatalf("enriched stream holds %d after a replay, want 2", info.State.Msgs)
	}
}
