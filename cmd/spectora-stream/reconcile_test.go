package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/internal/audit"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/sim"
	"github.com/spectora-stream/spectora-stream/reconcile"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Changes made while the system was down (longer than Svix retries) are
// recovered by serve's reconciler as soon as it starts: one reconciled
// event per changed record, enriched with the record it carried and
// audited; a quick publish also yields the inspection.published a rule
// derives.
func TestServeReconcilesChangesMadeWhileItWasDown(t *testing.T) {
	store := sim.NewStore(700)
	api := sim.NewAPI(sim.APIConfig{Token: "sim-token"}, store)
	apiSrv := httptest.NewServer(api)
	defer apiSrv.Close()
	ids := map[string]bool{}
	var quick string
	for range 4 {
		quick = store.Create(sim.TypeInspection)
		ids[quick] = true
	}
	ids[store.Create(sim.TypeAgent)] = true
	store.Update(sim.TypeInspection, quick, "published_at", time.Now().UTC().Format(time.RFC3339))
	time.Sleep(5 * time.Millisecond) // past RECONCILE_SETTLE

	p := testProcess(t, t.TempDir())
	cf := testConsumerFlags(t, apiSrv.URL)
	cf.Interval = time.Hour
	cf.Reconcile.Rules = "inspection.published=attributes.published_at"
	p.consumers = &cf
	var logs natstest.Buffer
	stop := startServeLogging(t, p, slog.New(slog.NewTextHandler(&logs, nil)))
	defer func() { _ = stop() }()
	start := time.Now()

	var lines []audit.Entry
	natstest.Eventually(t, natstest.Patience, "6 audit lines", func() bool {
		lines = auditLines(t, cf.AuditLog)
		if len(lines) < 6 && time.Since(start) > natstest.Patience-time.Second {
			for _, l := range lines {
				t.Logf("audited %s %s", l.Subject, l.RecordID)
			}
			t.Logf("serve's log:\n%s", logs.String())
		}
		return len(lines) >= 6
	})
	served := api.Served.Load()
	got := map[string]int{}
	for _, l := range lines {
		got[l.Subject]++
		if l.RecordStatus != "found" || !ids[l.RecordID] {
			t.Errorf("audit line %+v", l)
		}
	}
	if got["spectora.enriched.inspection.reconciled"] != 4 || got["spectora.enriched.agent.reconciled"] != 1 || got["spectora.enriched.inspection.published"] != 1 {
		t.Fatalf("audited subjects %v", got)
	}
	if served != 0 {
		t.Errorf("the enricher fetched %d records the reconciled events carried", served)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(auditLines(t, cf.AuditLog)); n != 6 {
		t.Fatalf("%d audit lines after stop", n)
	}
}

// The reconcile command killed with SIGKILL in the middle of a run loses
// nothing and duplicates nothing: the checkpoint did not move, the rerun
// reads every change again, and the stream drops what the killed run stored.
func TestReconcileKilledMidRunLosesAndDuplicatesNothing(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.JetStream(t, srv)
	natstest.Streams(t, js)
	store := sim.NewStore(5000)
	const n = 450 // three pages of 200
	for range n {
		store.Create(sim.TypeClient)
	}
	api := sim.NewAPI(sim.APIConfig{Token: "k", Latency: 400 * time.Millisecond}, store)
	apiSrv := httptest.NewServer(api)
	defer apiSrv.Close()
	time.Sleep(5 * time.Millisecond)
	args := []string{"reconcile", "--resource", "client", "--since", "1h"}
	env := []string{"NATS_URL=" + srv.ClientURL(), "SPECTORA_API_URL=" + apiSrv.URL, "SPECTORA_API_TOKEN=k",
		"SPECTORA_API_RATE_LIMIT=100", "RECONCILE_SETTLE=1ms", "LOG_FORMAT=json"}

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), append(env, "SPECTORA_TEST_MAIN_ARGS="+strings.Join(args, "\x1f"))...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 { return natstest.StreamInfo(t, js, stream.Raw).State.Msgs }
	waitFor(t, "the first page stored", func() bool { return stored() >= 200 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killedAt := stored()
	if killedAt >= n {
		t.Fatalf("the run finished (%d stored) before it was killed:\n%s", killedAt, out.String())
	}

	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	// The rerun, from the checkpoint the killed run never moved, finds what
	// it stored seen (it records each version after the PubAck) or, killed in
	// between, already stored.
	code, stdout, stderr := runCLI(t, "reconcile", "--resource", "client", "--reconcile-lookback", "1h")
	var res reconcile.Result
	var passes int
	if _, err := fmt.Sscanf(strings.TrimSpace(stdout), "reconcile: passes %d, listed %d, already seen %d, emitted %d (rules %d), already stored %d",
		&passes, &res.Listed, &res.Seen, &res.Emitted, &res.Rules, &res.Duplicates); err != nil || code != 0 {
		t.Fatalf("rerun after SIGKILL at %d: exit %d, %v\n%s\n%s", killedAt, code, err, stdout, stderr)
	}
	if res.Listed != n || res.Emitted != n-int(killedAt) || res.Seen+res.Duplicates != int(killedAt) {
		t.Fatalf("rerun after SIGKILL at %d: %s", killedAt, stdout)
	}
	if got := stored(); got != n {
		t.Fatalf("%d events stored for %d changed records", got, n)
	}
	// Every event is one record's, once.
	s, err := js.Stream(context.Background(), stream.Raw)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for seq := uint64(1); seq <= n; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(stream.HeaderRecordID)
		if seen[id] || m.Header.Get(stream.HeaderOrigin) != stream.OriginReconcile || m.Header.Get(jetstream.MsgIDHeader) == "" {
			t.Fatalf("event #%d: record %s (seen before: %v), headers %v", seq, id, seen[id], m.Header)
		}
		seen[id] = true
	}
	// The checkpoint moved: a run without --since lists nothing older.
	code, stdout, _ = runCLI(t, "reconcile", "--resource", "client")
	if code != 0 || !strings.Contains(stdout, "listed 0,") {
		t.Fatalf("run from the checkpoint: exit %d: %s", code, stdout)
	}
}

// TestMain runs the command line in SPECTORA_TEST_MAIN_ARGS (separated by
// \x1f) as the binary would, when a test started this test binary as a
// process to kill; otherwise the tests.
func TestMain(m *testing.M) {
	if args := os.Getenv("SPECTORA_TEST_MAIN_ARGS"); args != "" {
		os.Exit(runMain(strings.Split(args, "\x1f"), os.Stderr))
	}
	os.Exit(m.Run())
}
