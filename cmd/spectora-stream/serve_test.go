package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/admin"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/internal/audit"
	"github.com/spectora-stream/spectora-stream/internal/eventindex"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/sim"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

func testConsumerFlags(t *testing.T, apiURL string) consumerFlags {
	t.Helper()
	return consumerFlags{
		Groups: "enricher,audit", Concurrency: 4, MaxDeliver: 3, Backoff: []time.Duration{100 * time.Millisecond},
		AckWait: 5 * time.Second, DrainTimeout: 5 * time.Second, AuditLog: filepath.Join(t.TempDir(), "audit.jsonl"),
		DLQMaxAge: ptr(time.Hour), apiFlags: testAPIFlags(apiURL, "sim-token"), Reconcile: testReconcileFlags(), CacheTTL: time.Hour,
	}
}

// testAPIFlags are the API settings with their defaults, as kong fills them.
func testAPIFlags(url, token string) apiFlags {
	return apiFlags{APIURL: url, APIToken: token, SinceParam: spectora.DefaultSinceParam, APITimeout: 2 * time.Second, APIRateLimit: 100}
}

// testReconcileFlags are the reconciler's defaults, settling at once.
func testReconcileFlags() reconcileFlags {
	return reconcileFlags{VersionField: enrich.DefaultVersionField, VersionsTTL: time.Hour, Settle: time.Millisecond, Lookback: time.Hour}
}

func auditLines(t *testing.T, path string) []audit.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []audit.Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e audit.Entry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	natstest.Eventually(t, natstest.Patience, what, cond)
}

// serve with a simulated Spectora: every event the simulator sends is stored,
// enriched with its record and written to the audit log; a failing API
// dead-letters, the dlq commands show and redrive, replay reprocesses.
func TestServeEndToEndWithSimulator(t *testing.T) {
	store := sim.NewStore(500)
	api := sim.NewAPI(sim.APIConfig{Token: "sim-token"}, store)
	var failing atomic.Bool
	apiSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		api.ServeHTTP(w, r)
	}))
	defer apiSrv.Close()

	p := testProcess(t, t.TempDir())
	p.Embedded.Listen = freeAddr(t) // operator commands connect here
	cf := testConsumerFlags(t, apiSrv.URL)
	cf.Groups = "enricher,audit,indexer"
	p.consumers = &cf
	gf := p.gateway
	stop := startServe(t, p)
	defer func() { _ = stop() }()
	client := clientFlags{natsAuth: natsAuth{ConnectTimeout: 5 * time.Second}, Listen: p.Embedded.Listen, StoreDir: p.Embedded.StoreDir}

	sender, err := sim.NewSender(sim.SenderConfig{URL: "http://" + gf.HTTPAddr + "/webhooks/spectora", Secret: gf.Secret, Rate: 100, Count: sim.RoundLength}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sender.Run(context.Background(), sim.NewScript(store)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "13 audit lines", func() bool { return len(auditLines(t, cf.AuditLog)) == sim.RoundLength })
	statuses := map[string]int{}
	for _, l := range auditLines(t, cf.AuditLog) {
		statuses[l.RecordStatus]++
		if l.RecordStatus == "found" && !strings.Contains(string(l.Record), `"attributes"`) {
			t.Errorf("found record without attributes: %s", l.Record)
		}
	}
	// 3 deleted events are not fetched; the canceled inspection's record was
	// deleted by the time some events were enriched, so found+gone = 10.
	if statuses["not_fetched"] != 3 || statuses["found"]+statuses["gone"] != 10 || statuses["found"] < 7 {
		t.Fatalf("record statuses %v", statuses)
	}

	// events get and tail print what was stored, decoded.
	out := stdoutOf(t, func() error {
		return (&eventsGetCmd{NATS: client, Seq: 1, eventsFormat: eventsFormat{Stream: "SPECTORA"}}).Run(context.Background())
	})
	for _, want := range []string{"SPECTORA #1  spectora.", "Nats-Msg-Id:", "event: id=", "body (application/json):"} {
		if !strings.Contains(out, want) {
			t.Errorf("events get 1 lacks %q:\n%s", want, out)
		}
	}
	out = stdoutOf(t, func() error {
		return (&eventsTailCmd{NATS: client, Last: 2, Subject: "spectora.enriched.inspection.*", eventsFormat: eventsFormat{Stream: "SPECTORA_ENRICHED", JSON: true}}).Run(context.Background())
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("events tail -n 2 --json: %d lines:\n%s", len(lines), out)
	}
	for _, l := range lines {
		var ev struct {
			Subject string
			Event   struct{ RecordStatus string }
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil || !strings.HasPrefix(ev.Subject, "spectora.enriched.inspection.") || ev.Event.RecordStatus == "" {
			t.Errorf("events tail line %s: %+v %v", l, ev, err)
		}
	}
	if err := (&eventsGetCmd{NATS: client, Seq: 9999, eventsFormat: eventsFormat{Stream: "SPECTORA"}}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "no event 9999") {
		t.Errorf("events get 9999: %v", err)
	}

	// events find: every event of inspection 503 (the round's first), newest
	// first, from the indexer group's index.
	natstest.WaitDone(t, operatorJS(t, client), stream.Raw, eventindex.GroupName, sim.RoundLength)
	out = stdoutOf(t, func() error {
		return (&eventsFindCmd{NATS: client, Record: "503", Resource: "inspection", Source: "default", Last: 20}).Run(context.Background())
	})
	var subjects []string
	for l := range strings.Lines(out) {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "SPECTORA" {
			subjects = append(subjects, f[3])
		}
	}
	if strings.Join(subjects, " ") != "spectora.inspection.published spectora.inspection.rescheduled spectora.inspection.confirmed spectora.inspection.created" {
		t.Errorf("events find 503:\n%s", out)
	}

	// The API breaks: the enricher dead-letters after 3 deliveries.
	failing.Store(true)
	signerSend(t, gf, "inspection.confirmed", "501")
	var dls []admin.DeadLetter
	waitFor(t, "a dead letter", func() bool {
		_ = client.withAdmin(context.Background(), func(a *admin.Admin) error {
			dls, _ = a.DeadLetters(context.Background(), "enricher", 0)
			return nil
		})
		return len(dls) == 1
	})
	if err := (&dlqListCmd{NATS: client}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := (&dlqShowCmd{NATS: client, Seq: dls[0].Sequence}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	failing.Store(false)
	if err := (&dlqRedriveCmd{NATS: client, All: true}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the redriven event audited", func() bool { return len(auditLines(t, cf.AuditLog)) == sim.RoundLength+1 })

	// Replay the audit group over the last hour: every enriched event again.
	if err := (&replayCmd{NATS: client, Group: "audit", Since: time.Hour}).Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replayed audit lines", func() bool { return len(auditLines(t, cf.AuditLog)) == 2*(sim.RoundLength+1) })
	if err := (&replayCmd{NATS: client, Group: "nobody", Since: time.Hour}).Run(context.Background(), nil); err == nil {
		t.Fatal("replay of an unknown group succeeded")
	}

	resp, err := http.Get("http://" + p.Ops.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	for _, want := range []string{`spectora_consumer_messages_total{group="enricher",outcome="dead_lettered"} 1`,
		`spectora_consumer_messages_total{group="audit",outcome="ack"}`, `spectora_api_requests_total{code="200"`, `spectora_record_cache_total`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// stdoutOf runs f and returns what it printed on stdout.
// operatorJS connects as an operator command does.
func operatorJS(t *testing.T, client clientFlags) jetstream.JetStream {
	t.Helper()
	conn, js, err := client.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return js
}

func stdoutOf(t *testing.T, f func() error) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	err = f()
	os.Stdout = stdout
	_ = w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return <-out
}

func signerSend(t *testing.T, gf *gatewayFlags, typ, id string) {
	t.Helper()
	s, err := sim.NewSender(sim.SenderConfig{URL: "http://" + gf.HTTPAddr + "/webhooks/spectora", Secret: gf.Secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	script := sim.NewScript(sim.NewStore(0))
	ev := script.Next()
	ev.Type, ev.RecordID = typ, id
	ev.Body = []byte(`{"type":"` + typ + `","id":` + id + `}`)
	if !s.Deliver(context.Background(), ev) {
		t.Fatal("not delivered")
	}
}
