package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/sim"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/reconcile"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

// company is one Spectora company: its records and its API, with its own key.
type company struct {
	store *sim.Store
	api   *sim.API
	url   string
}

type env struct {
	js        jetstream.JetStream
	versions  *enrich.Versions
	cps       jetstream.KeyValue
	companies map[string]*company
	clients   map[string]*spectora.Client
	reg       *prometheus.Registry
	rules     []reconcile.Rule
}

// newEnv starts NATS, two companies whose record IDs collide ("acme" and
// "beta", both counting from 1001) and the enricher group with versions.
func newEnv(t *testing.T, rules ...reconcile.Rule) *env {
	t.Helper()
	e := &env{companies: map[string]*company{}, clients: map[string]*spectora.Client{}, reg: prometheus.NewRegistry(), rules: rules}
	_, e.js = natstest.JetStream(t, natstest.Server(t))
	records := natstest.Streams(t, e.js)
	ctx := context.Background()
	vkv, err := e.js.CreateOrUpdateKeyValue(ctx, enrich.VersionBucketConfig(time.Hour, 1))
	if err != nil {
		t.Fatal(err)
	}
	e.versions = enrich.NewVersions(vkv, "")
	if e.cps, err = e.js.CreateOrUpdateKeyValue(ctx, reconcile.CheckpointBucketConfig(1)); err != nil {
		t.Fatal(err)
	}
	fetchers := enrich.Clients{}
	for _, name := range []string{"acme", "beta"} {
		c := &company{store: sim.NewStore(1000)}
		c.store.Strict = true
		c.api = sim.NewAPI(sim.APIConfig{Token: name + "-key"}, c.store)
		srv := httptest.NewServer(c.api)
		t.Cleanup(srv.Close)
		c.url = srv.URL
		client, err := spectora.NewClient(spectora.Config{BaseURL: srv.URL, Token: name + "-key", RateLimit: 1000, RateBurst: 100, PageSize: 3})
		if err != nil {
			t.Fatal(err)
		}
		e.companies[name], e.clients[name], fetchers[name] = c, client, client
	}
	enr := enrich.New(enrich.Config{Versions: e.versions, TrackTypes: reconcile.Types(rules)}, records, fetchers)
	g, err := consumers.NewGroup(consumers.Config{Name: enrich.GroupName, Handler: enr.Handler(e.js), Concurrency: 8}, e.js)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, g)
	return e
}

func (e *env) reconciler(t *testing.T) *reconcile.Reconciler {
	t.Helper()
	return e.reconcilerAt(t, nil)
}

// reconcilerAt is a reconciler whose clock is now (nil: time.Now).
func (e *env) reconcilerAt(t *testing.T, now func() time.Time) *reconcile.Reconciler {
	t.Helper()
	sources := map[string]reconcile.Lister{}
	for name, c := range e.clients {
		sources[name] = c
	}
	m, err := reconcile.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := reconcile.New(reconcile.Config{Sources: sources, Versions: e.versions, Checkpoints: e.cps, Publisher: e.js,
		Settle: time.Millisecond, Rules: e.rules, Metrics: m, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// run reconciles once, waits for the enricher to settle everything stored,
// and returns the result.
func (e *env) run(t *testing.T, opts reconcile.Options) reconcile.Result {
	t.Helper()
	time.Sleep(5 * time.Millisecond) // past the settle time of the last change
	res, err := e.reconciler(t).Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	return res
}

func (e *env) settle(t *testing.T) {
	t.Helper()
	natstest.WaitDone(t, e.js, stream.Raw, enrich.GroupName, natstest.StreamInfo(t, e.js, stream.Raw).State.LastSeq)
}

// webhook stores a webhook as the gateway would.
func (e *env) webhook(t *testing.T, source, eventType, id string) {
	t.Helper()
	msgID := fmt.Sprintf("msg_%s_%s_%s_%d", source, eventType, id, time.Now().UnixNano())
	if _, err := e.js.PublishMsg(context.Background(), natstest.EventFrom(source, msgID, eventType, id), jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
}

// enriched reads the enriched stream from sequence from on.
func (e *env) enriched(t *testing.T, from uint64) []*spectorav1.EnrichedEvent {
	t.Helper()
	s, err := e.js.Stream(context.Background(), stream.Enriched)
	if err != nil {
		t.Fatal(err)
	}
	var out []*spectorav1.EnrichedEvent
	for seq := from; seq <= natstest.StreamInfo(t, e.js, stream.Enriched).State.LastSeq; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev spectorav1.EnrichedEvent
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(stream.HeaderOrigin); (got == stream.OriginReconcile) != (len(ev.GetEvent().GetRecord()) > 0) {
			t.Fatalf("enriched #%d: origin header %q, record carried %d bytes", seq, got, len(ev.GetEvent().GetRecord()))
		}
		out = append(out, &ev)
	}
	return out
}

func (e *env) lastEnriched(t *testing.T) uint64 {
	return natstest.StreamInfo(t, e.js, stream.Enriched).State.LastSeq
}

func (e *env) served() int64 {
	var n int64
	for _, c := range e.companies {
		n += c.api.Served.Load()
	}
	return n
}

// A blackout: changes to N records of each company arrive by no webhook.
// The reconciler publishes exactly N events per company, each stored once,
// enriched once without another API call, with that company's record;
// changes that came by webhook produce nothing, and a second run stores
// nothing new.
func TestBlackoutIsRecoveredOnceAndCompaniesNeverMix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Before the blackout: records created and announced by webhook.
	ids := map[string][]string{}
	for name, c := range e.companies {
		for range 4 {
			id := c.store.Create(sim.TypeInspection)
			c.store.Update(sim.TypeInspection, id, "company", name)
			ids[name] = append(ids[name], id)
			e.webhook(t, name, "inspection.created", id)
		}
		e.webhook(t, name, "agent.created", c.store.Create(sim.TypeAgent))
	}
	e.settle(t)
	if res := e.run(t, reconcile.Options{}); res.Emitted != 0 || res.Seen != res.Listed || res.Listed != 10 {
		t.Fatalf("nothing was missed, yet: %s", res)
	}

	// The blackout: per company, 2 known inspections change, 3 agents and an
	// inspection are created and changed again: 6 records, 10 changes.
	const n = 6
	for name, c := range e.companies {
		c.store.Update(sim.TypeInspection, ids[name][0], "confirmed", true)
		c.store.Update(sim.TypeInspection, ids[name][1], "fee", 999)
		for range 3 {
			c.store.Update(sim.TypeAgent, c.store.Create(sim.TypeAgent), "company", name)
		}
		id := c.store.Create(sim.TypeInspection)
		c.store.Update(sim.TypeInspection, id, "company", name)
	}
	from := e.lastEnriched(t) + 1
	served := e.served()
	res := e.run(t, reconcile.Options{})
	if res.Emitted != 2*n || res.Duplicates != 0 || res.Rules != 0 {
		t.Fatalf("blackout of %d records per company: %s", n, res)
	}
	got := e.enriched(t, from)
	if len(got) != 2*n {
		t.Fatalf("%d enriched events, want %d", len(got), 2*n)
	}
	if calls := e.served() - served; calls != 0 {
		t.Errorf("the enricher fetched %d records the reconciled events carried", calls)
	}
	perSource := map[string]int{}
	seen := map[string]bool{}
	for _, ev := range got {
		src := ev.GetEvent().GetSource()
		perSource[src]++
		key := src + "/" + ev.GetEvent().GetId()
		if seen[key] {
			t.Errorf("event %s enriched twice", key)
		}
		seen[key] = true
		if ev.GetEvent().GetAction() != reconcile.Action || ev.GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_FOUND {
			t.Errorf("event %s: %s, record %s", key, ev.GetEvent().GetSubject(), ev.GetRecordStatus())
		}
		if !bytes.Contains(ev.GetRecord(), []byte(`"company":"`+src+`"`)) {
			t.Errorf("%s's event %s carries another company's record: %s", src, ev.GetEvent().GetRecordId(), ev.GetRecord())
		}
	}
	if perSource["acme"] != n || perSource["beta"] != n {
		t.Errorf("events per company %v, want %d each", perSource, n)
	}

	// Again, from the checkpoints and from long before them: nothing new.
	for _, opts := range []reconcile.Options{{}, {Since: time.Now().Add(-time.Hour)}} {
		if res := e.run(t, opts); res.Emitted != 0 || res.Duplicates != 0 {
			t.Fatalf("rerun %+v: %s", opts, res)
		}
	}
	if last := e.lastEnriched(t); last != from-1+2*n {
		t.Fatalf("enriched stream grew to %d after reruns", last)
	}
}

// Two instances reconciling the same changes at once store each event once.
func TestConcurrentRunsStoreEachChangeOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range e.companies {
		for range 7 {
			c.store.Create(sim.TypeClient)
		}
	}
	time.Sleep(5 * time.Millisecond)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total reconcile.Result
	)
	for range 3 {
		rc := e.reconciler(t)
		wg.Go(func() {
			res, err := rc.Run(context.Background(), reconcile.Options{Resources: []string{"client"}})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total.Emitted += res.Emitted
			total.Duplicates += res.Duplicates
			mu.Unlock()
		})
	}
	wg.Wait()
	e.settle(t)
	if total.Emitted != 14 {
		t.Fatalf("three runs stored %d events for 14 changes (%d duplicates dropped)", total.Emitted, total.Duplicates)
	}
	if got := natstest.StreamInfo(t, e.js, stream.Raw).State.Msgs; got != 14 {
		t.Fatalf("raw stream holds %d events", got)
	}
}

// A quick publish sends no inspection.published: a rule derives it once;
// an inspection whose inspection.published arrived gets none.
func TestRuleDerivesAMissedPublishOnce(t *testing.T) {
	t.Parallel()
	rules, err := reconcile.ParseRules("inspection.published=attributes.published_at")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, rules...)
	c := e.companies["acme"]
	announced, quiet := c.store.Create(sim.TypeInspection), c.store.Create(sim.TypeInspection)
	for _, id := range []string{announced, quiet} {
		e.webhook(t, "acme", "inspection.created", id)
	}
	e.settle(t)
	c.store.Update(sim.TypeInspection, announced, "published_at", time.Now().UTC().Format(time.RFC3339))
	e.webhook(t, "acme", "inspection.published", announced)
	c.store.Update(sim.TypeInspection, quiet, "published_at", time.Now().UTC().Format(time.RFC3339))
	e.settle(t)
	from := e.lastEnriched(t) + 1
	res := e.run(t, reconcile.Options{Sources: []string{"acme"}})
	if res.Emitted != 2 || res.Rules != 1 {
		t.Fatalf("quiet publish: %s, want a reconciled event and one derived inspection.published", res)
	}
	var subjects []string
	for _, ev := range e.enriched(t, from) {
		if ev.GetEvent().GetRecordId() != quiet {
			t.Errorf("event for inspection %s, which was announced", ev.GetEvent().GetRecordId())
		}
		subjects = append(subjects, ev.GetEvent().GetSubject())
	}
	if strings.Join(subjects, " ") != "spectora.inspection.reconciled spectora.inspection.published" &&
		strings.Join(subjects, " ") != "spectora.inspection.published spectora.inspection.reconciled" {
		t.Fatalf("subjects %v", subjects)
	}
	if res := e.run(t, reconcile.Options{Since: time.Now().Add(-time.Hour)}); res.Emitted != 0 {
		t.Fatalf("rerun: %s", res)
	}
}

func TestDryRunPrintsAndStoresNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.companies["beta"].store.Create(sim.TypeAgent)
	var out bytes.Buffer
	res := e.run(t, reconcile.Options{DryRun: true, Out: &out, Sources: []string{"beta"}, Resources: []string{"agent"}})
	want := fmt.Sprintf("would publish spectora.agent.reconciled source=beta record=%s ", id)
	if res.Emitted != 1 || !strings.HasPrefix(out.String(), want) {
		t.Fatalf("dry run: %s\n%s", res, out.String())
	}
	if n := natstest.StreamInfo(t, e.js, stream.Raw).State.Msgs; n != 0 {
		t.Fatalf("dry run stored %d events", n)
	}
	if _, err := e.cps.Get(context.Background(), reconcile.CheckpointKey("beta", "agent")); err == nil {
		t.Fatal("dry run moved the checkpoint")
	}
	if _, err := e.reconciler(t).Run(context.Background(), reconcile.Options{Sources: []string{"gamma"}}); err == nil || !strings.Contains(err.Error(), `"gamma"`) {
		t.Fatalf("unknown source: %v", err)
	}
	if _, err := e.reconciler(t).Run(context.Background(), reconcile.Options{Resources: []string{"inspections"}}); err == nil || !strings.Contains(err.Error(), `"inspections"`) {
		t.Fatalf("unknown resource: %v", err)
	}
}

// A --since later than the checkpoint reads from there but leaves the
// checkpoint: the changes between the two are read by the next run.
func TestSinceAfterTheCheckpointLeavesIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.companies["acme"]
	opts := reconcile.Options{Sources: []string{"acme"}, Resources: []string{"client"}}
	e.run(t, opts) // the checkpoint: now
	gap := c.store.Create(sim.TypeClient)
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	later := c.store.Create(sim.TypeClient)
	withSince := opts
	withSince.Since = since
	if res := e.run(t, withSince); res.Emitted != 1 {
		t.Fatalf("--since after %s's change: %s, want only %s", gap, res, later)
	}
	if res := e.run(t, opts); res.Emitted != 1 || res.Seen != 1 {
		t.Fatalf("from the checkpoint: %s, want %s recovered and %s seen", res, gap, later)
	}
}

// Every series of the alerts exists from the start, at 0, so the first
// increase after a restart is an increase.
func TestMetricsStartAtZero(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	m, err := reconcile.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.New(reconcile.Config{Sources: map[string]reconcile.Lister{"acme": e.clients["acme"]}, Versions: e.versions,
		Checkpoints: e.cps, Publisher: e.js, Metrics: m}); err != nil {
		t.Fatal(err)
	}
	// 3 resources × (reconciled, rule); 3 × (ok, error); 3 listed.
	for name, want := range map[string]int{"spectora_reconciler_events_total": 6, "spectora_reconciler_passes_total": 6, "spectora_reconciler_records_listed_total": 3} {
		if n := seriesAtZero(t, reg, name); n != want {
			t.Errorf("%s: %d series at 0 at start, want %d", name, n, want)
		}
	}
}

func seriesAtZero(t *testing.T, g prometheus.Gatherer, name string) int {
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == name && m.GetCounter().GetValue() == 0 {
				n++
			}
		}
	}
	return n
}

// A pass that lists a record changed after it started keeps its checkpoint
// (offset paging may have skipped another), at most MaxHeld times in a row.
func TestChangesDuringAListingHoldTheCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.companies["acme"]
	start := time.Now().Add(-time.Hour)
	opts := reconcile.Options{Sources: []string{"acme"}, Resources: []string{"agent"}, Since: start.Add(-time.Hour)}
	checkpoint := func() reconcile.Checkpoint {
		entry, err := e.cps.Get(context.Background(), reconcile.CheckpointKey("acme", "agent"))
		if err != nil {
			t.Fatal(err)
		}
		var cp reconcile.Checkpoint
		if err := json.Unmarshal(entry.Value(), &cp); err != nil {
			t.Fatal(err)
		}
		return cp
	}
	// A clock an hour behind: every change is after the pass's start.
	c.store.Create(sim.TypeAgent)
	behind := e.reconcilerAt(t, func() time.Time { return start })
	for held := 1; held <= reconcile.MaxHeld; held++ {
		if _, err := behind.Run(context.Background(), opts); err != nil {
			t.Fatal(err)
		}
		if cp := checkpoint(); cp.Held != held || !cp.Through.IsZero() {
			t.Fatalf("pass %d: %+v", held, cp)
		}
	}
	if _, err := behind.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if cp := checkpoint(); cp.Held != 0 || cp.Through.IsZero() {
		t.Fatalf("after %d holds the checkpoint must move: %+v", reconcile.MaxHeld, cp)
	}
}

func TestParseRules(t *testing.T) {
	t.Parallel()
	rules, err := reconcile.ParseRules(" inspection.published = attributes.published_at ; inspection.canceled=attributes.status==canceled;")
	if err != nil || len(rules) != 2 || rules[1].Equals != "canceled" || rules[0].Path != "attributes.published_at" {
		t.Fatalf("%+v %v", rules, err)
	}
	doc := []byte(`{"data":{"attributes":{"published_at":null,"status":"canceled"}}}`)
	if rules[0].Matches(doc) || !rules[1].Matches(doc) {
		t.Fatal("matches")
	}
	for _, bad := range []string{"inspection.published", "published=attributes.x", "inspection.reconciled=attributes.x", "inspection.published="} {
		if _, err := reconcile.ParseRules(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
