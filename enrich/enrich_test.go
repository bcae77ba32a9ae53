package enrich_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spectora-stream/spectora-stream/admin"
	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/internal/apitest"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

type env struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	api *apitest.API
	enr *enrich.Enricher
	reg *prometheus.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{api: apitest.New(t), reg: prometheus.NewRegistry()}
	_, e.js = natstest.JetStream(t, natstest.Server(t))
	e.kv = natstest.Streams(t, e.js)
	c, err := spectora.NewClient(spectora.Config{BaseURL: e.api.URL, Token: apitest.Token, RateLimit: 1000, RateBurst: 100})
	if err != nil {
		t.Fatal(err)
	}
	m, err := enrich.NewMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.enr = enrich.New(enrich.Config{Metrics: m}, e.kv, enrich.Clients{"": c})
	return e
}

func (e *env) run(t *testing.T, cfg consumers.Config) {
	t.Helper()
	g, err := consumers.NewGroup(cfg, e.js)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, g)
}

func TestThreeGroupsOneEventOneAPICall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.api.Latency = 50 * time.Millisecond // the three look-ups overlap
	var (
		mu   sync.Mutex
		recs = map[string]spectora.Record{}
	)
	lookup := func(name string) consumers.Handler {
		return func(ctx context.Context, m *consumers.Message) error {
			rec, err := e.enr.Record(ctx, m.Event)
			if err != nil {
				return err
			}
			mu.Lock()
			recs[name] = rec
			mu.Unlock()
			return nil
		}
	}
	for _, name := range []string{"crm", "billing", "reports"} {
		e.run(t, consumers.Config{Name: name, Handler: lookup(name)})
	}
	seq := natstest.Publish(t, e.js, "msg_1", "inspection.confirmed", "42")
	for _, name := range []string{"crm", "billing", "reports"} {
		natstest.WaitDone(t, e.js, stream.Raw, name, seq)
	}
	if n := e.api.Calls.Load(); n != 1 {
		t.Fatalf("API called %d times, want 1", n)
	}
	for name, rec := range recs {
		if rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND || rec.Path != "/v2/inspections/42" || !json.Valid(rec.Body) {
			t.Fatalf("%s got %+v", name, rec)
		}
	}
	// A later group on the same event is served from the shared cache.
	e.run(t, consumers.Config{Name: "late", Handler: lookup("late")})
	natstest.WaitDone(t, e.js, stream.Raw, "late", seq)
	if n := e.api.Calls.Load(); n != 1 {
		t.Fatalf("API called %d times after a cached look-up", n)
	}
	if hits := natstest.Metric(t, e.reg, "spectora_record_cache_total", map[string]string{"result": "hit"}); hits != 1 {
		t.Fatalf("cache hits %g, want 1", hits)
	}
}

func TestCachedRecordOlderThanTheEventIsRefetched(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := &spectorav1.WebhookEvent{Source: "default", Resource: "agent", Action: "updated", RecordId: "5", ReceivedAt: timestamppb.New(time.Now().Add(-time.Minute))}
	if _, err := e.enr.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	// Same record, a newer event: the cached copy predates it.
	ev2 := proto.Clone(ev).(*spectorav1.WebhookEvent)
	ev2.ReceivedAt = timestamppb.New(time.Now().Add(time.Second))
	if _, err := e.enr.Record(context.Background(), ev2); err != nil {
		t.Fatal(err)
	}
	if n := e.api.Calls.Load(); n != 2 {
		t.Fatalf("API called %d times, want 2", n)
	}
	// The older event is happy with the newer copy.
	if _, err := e.enr.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if n := e.api.Calls.Load(); n != 2 {
		t.Fatalf("API called %d times, want still 2", n)
	}
}

func TestAPIErrorsBecomeConsumerDecisions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := &spectorav1.WebhookEvent{Source: "default", Resource: "inspection", Action: "confirmed", RecordId: "1", ReceivedAt: timestamppb.Now()}
	e.api.Fail429.Store(1)
	e.api.RetryAfter = "120"
	_, err := e.enr.Record(context.Background(), ev)
	if d := consumers.Decide(err, 1, 5, []time.Duration{time.Second}); d.Outcome != consumers.OutcomeRetry || d.Delay != 120*time.Second {
		t.Fatalf("long 429: Decide = %+v (%v), want a retry in 120s", d, err)
	}
	e.api.Fail500.Store(100)
	_, err = e.enr.Record(context.Background(), ev)
	if d := consumers.Decide(err, 1, 5, []time.Duration{time.Second}); d.Outcome != consumers.OutcomeRetry || d.Delay != time.Second {
		t.Fatalf("5xx: Decide = %+v (%v), want a retry with the group's backoff", d, err)
	}
}

func TestEnricherGroupRepublishesOncePerEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.api.Gone("/v2/inspections/77")
	e.run(t, consumers.Config{Name: enrich.GroupName, Handler: e.enr.Handler(e.js)})
	natstest.Publish(t, e.js, "msg_a", "inspection.confirmed", "42")
	natstest.Publish(t, e.js, "msg_gone", "inspection.confirmed", "77")
	last := natstest.Publish(t, e.js, "msg_del", "inspection.deleted", "78")
	natstest.WaitDone(t, e.js, stream.Raw, enrich.GroupName, last)
	enriched := readEnriched(t, e.js)
	if len(enriched) != 3 {
		t.Fatalf("%d enriched events, want 3", len(enriched))
	}
	got := enriched["msg_a"]
	if got.GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_FOUND || got.GetRecordPath() != "/v2/inspections/42" ||
		got.GetSourceSequence() != 1 || got.GetFetchedAt() == nil || got.GetEvent().GetRecordId() != "42" {
		t.Fatalf("enriched = %v", got)
	}
	if enriched["msg_gone"].GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_GONE ||
		enriched["msg_del"].GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED {
		t.Fatalf("gone %v, deleted %v", enriched["msg_gone"].GetRecordStatus(), enriched["msg_del"].GetRecordStatus())
	}
	if n := e.api.Calls.Load(); n != 2 {
		t.Fatalf("API called %d times, want 2 (found, 404; deleted never)", n)
	}
	// Reprocessing the raw events republishes nothing: the enriched stream's
	// duplicate window drops copies with the same message ID.
	if _, err := e.js.ResetConsumerToSequence(context.Background(), stream.Raw, enrich.GroupName, 1); err != nil {
		t.Fatal(err)
	}
	natstest.WaitDone(t, e.js, stream.Raw, enrich.GroupName, last)
	if info := natstest.StreamInfo(t, e.js, stream.Enriched); info.State.Msgs != 3 {
		t.Fatalf("enriched stream holds %d after a replay, want 3", info.State.Msgs)
	}
}

// readEnriched reads the enriched stream, keyed by svix ID, checking each
// message's headers and subject.
func readEnriched(t *testing.T, js jetstream.JetStream) map[string]*spectorav1.EnrichedEvent {
	t.Helper()
	s, err := js.Stream(context.Background(), stream.Enriched)
	if err != nil {
		t.Fatal(err)
	}
	info := natstest.StreamInfo(t, js, stream.Enriched)
	out := map[string]*spectorav1.EnrichedEvent{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := stream.Decode(m.Header, m.Data)
		if err != nil || ev.Enriched == nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		want := stream.Route{Resource: ev.Webhook.GetResource(), Action: ev.Webhook.GetAction()}.EnrichedSubject()
		if m.Subject != want || m.Header.Get(stream.HeaderRecordStatus) != stream.RecordStatusName(ev.Enriched.GetRecordStatus()) ||
			m.Header.Get(stream.HeaderMsgID) != ev.Webhook.GetId() {
			t.Fatalf("seq %d: subject %q headers %v", seq, m.Subject, m.Header)
		}
		out[ev.Webhook.GetId()] = ev.Enriched
	}
	return out
}

// Two companies whose record IDs collide: each event is enriched from its
// own company's API with its own key, each record is fetched once and cached
// apart, and a source without a client of its own is not fetched at all.
func TestTwoCompaniesWithCollidingRecordIDs(t *testing.T) {
	t.Parallel()
	_, js := natstest.JetStream(t, natstest.Server(t))
	kv := natstest.Streams(t, js)
	apis := map[string]*apitest.API{}
	clients := enrich.Clients{}
	for _, company := range []string{"acme", "beta"} {
		api := apitest.New(t)
		api.Key = company + "-key"
		c, err := spectora.NewClient(spectora.Config{BaseURL: api.URL, Token: api.Key, RateLimit: 1000, RateBurst: 100})
		if err != nil {
			t.Fatal(err)
		}
		apis[company], clients[company] = api, c
	}
	enr := enrich.New(enrich.Config{}, kv, clients)
	received := timestamppb.New(time.Now())
	event := func(source string) *spectorav1.WebhookEvent {
		return &spectorav1.WebhookEvent{Source: source, Resource: "inspection", Action: "confirmed", RecordId: "1", ReceivedAt: received}
	}
	for range 2 { // the second round is served from the cache
		for company := range apis {
			rec, err := enr.Record(context.Background(), event(company))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Data struct {
					Attributes struct{ Company string } `json:"attributes"`
				} `json:"data"`
			}
			if rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND || json.Unmarshal(rec.Body, &doc) != nil || doc.Data.Attributes.Company != company+"-key" {
				t.Fatalf("%s's inspection 1: %+v (%s)", company, rec, rec.Body)
			}
		}
	}
	for company, api := range apis {
		if n := api.Calls.Load(); n != 1 {
			t.Fatalf("%s's API called %d times, want 1", company, n)
		}
	}
	rec, err := enr.Record(context.Background(), event("gamma"))
	if err != nil || rec.Status != spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED {
		t.Fatalf("a source without a client: %+v, %v", rec, err)
	}
	if apis["acme"].Calls.Load()+apis["beta"].Calls.Load() != 2 {
		t.Fatalf("a source without a client was fetched with another company's key")
	}
}

func TestKeyIncludesTheSource(t *testing.T) {
	t.Parallel()
	if a, b := enrich.Key("acme", "inspection", "1"), enrich.Key("beta", "inspection", "1"); a == b {
		t.Fatalf("two companies' records share key %q", a)
	}
	if got := enrich.Key("default", "agent", "a.b/c"); got != "default.agent.b64_YS5iL2M" {
		t.Fatalf("Key = %q", got)
	}
}

// A dead letter of the enricher, redriven once the API works again, is
// republished under the webhook's svix-id, like any other event.
func TestRedrivenEventIsEnrichedUnderItsSvixID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.api.Fail500.Store(100) // the API is down for the first attempts
	e.run(t, consumers.Config{Name: enrich.GroupName, MaxDeliver: 1, Handler: e.enr.Handler(e.js)})
	seq := natstest.Publish(t, e.js, "msg_svix", "agent.updated", "7")
	natstest.WaitDone(t, e.js, stream.Raw, enrich.GroupName, seq)
	adm := admin.New(e.js)
	dls, err := adm.DeadLetters(context.Background(), enrich.GroupName, 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %v, %v", dls, err)
	}
	e.api.Fail500.Store(0)
	ack, err := adm.Redrive(context.Background(), dls[0].Sequence)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitDone(t, e.js, stream.Raw, enrich.GroupName, ack.Sequence)
	enriched := readEnriched(t, e.js)
	if got := enriched["msg_svix"]; got == nil || got.GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_FOUND {
		t.Fatalf("enriched %v: want the redriven event under msg_svix, found", enriched)
	}
}

func TestRecordsInMemoryFollowTheBucketsRule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry() // this enricher's counts apart from e.enr's
	m, err := enrich.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := spectora.NewClient(spectora.Config{BaseURL: e.api.URL, Token: apitest.Token, RateLimit: 1000, RateBurst: 100})
	if err != nil {
		t.Fatal(err)
	}
	// Room for about 60 of the fake API's records (~350 bytes each with
	// their bookkeeping); one may take at most 1/64 of it.
	mem := enrich.New(enrich.Config{Metrics: m, MemoryBytes: 64 * 400, MemoryTTL: time.Hour}, e.kv, enrich.Clients{"": c})
	ctx := context.Background()
	event := func(id string, at time.Time) *spectorav1.WebhookEvent {
		return &spectorav1.WebhookEvent{Source: "default", Resource: "agent", Action: "updated", RecordId: id, ReceivedAt: timestamppb.New(at)}
	}
	count := func(result string) float64 {
		return natstest.Metric(t, reg, "spectora_record_cache_total", map[string]string{"result": result})
	}
	then := time.Now().Add(-time.Minute)
	if _, err := mem.Record(ctx, event("5", then)); err != nil { // fetched, kept in memory
		t.Fatal(err)
	}
	// Events received before the fetch are answered from memory, without
	// reading the bucket or the API.
	for range 3 {
		rec, err := mem.Record(ctx, event("5", then))
		if err != nil || rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND || rec.Path != "/v2/connections/5" {
			t.Fatalf("from memory: %+v, %v", rec, err)
		}
	}
	if n, mh, kh := e.api.Calls.Load(), count("memory"), count("hit"); n != 1 || mh != 3 || kh != 0 {
		t.Fatalf("API calls %d, memory %g, bucket hits %g; want 1, 3, 0", n, mh, kh)
	}
	// An event received after the copy was fetched is not answered from
	// memory: the record may have changed since.
	if _, err := mem.Record(ctx, event("5", time.Now().Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	if n := e.api.Calls.Load(); n != 2 {
		t.Fatalf("API called %d times, want 2: a newer event needs a newer copy", n)
	}
	// A copy another instance fetched is read from the bucket and then kept.
	if _, err := e.enr.Record(ctx, event("6", then)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := mem.Record(ctx, event("6", then)); err != nil {
			t.Fatal(err)
		}
	}
	if n, kh := e.api.Calls.Load(), count("hit"); n != 3 || kh != 1 {
		t.Fatalf("API calls %d, bucket hits %g; want 3, 1", n, kh)
	}
	// The budget holds about 60 records: 100 more push record 6 out, and it
	// is read from the bucket again.
	for i := range 100 {
		if _, err := mem.Record(ctx, event(fmt.Sprint(100+i), then)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mem.Record(ctx, event("6", then)); err != nil {
		t.Fatal(err)
	}
	if kh := count("hit"); kh != 2 {
		t.Fatalf("bucket hits %g, want 2: record 6 should have left memory", kh)
	}

	// A copy older than the bucket's TTL is not used, as the bucket would
	// have dropped it.
	short := enrich.New(enrich.Config{MemoryBytes: 64 * 400, MemoryTTL: 50 * time.Millisecond}, nil, enrich.Clients{"": c})
	if _, err := short.Record(ctx, event("7", then)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	before := e.api.Calls.Load()
	if _, err := short.Record(ctx, event("7", then)); err != nil {
		t.Fatal(err)
	}
	if n := e.api.Calls.Load(); n != before+1 {
		t.Fatalf("API calls %d, want %d: a copy past its TTL must be fetched again", n, before+1)
	}
}
