//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/internal/audit"
	"github.com/spectora-stream/spectora-stream/internal/e2etest"
	"github.com/spectora-stream/spectora-stream/internal/sim"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
	"github.com/spectora-stream/spectora-stream/stream"
)

// stack is the compose stack of docker-compose.yml, run under a project of
// its own with the local images.
type stack struct {
	t       *testing.T
	compose []string // "docker compose" or "docker-compose"
	project string
	envFile string
	env     map[string]string
	js      jetstream.JetStream // as the operator user, from the host
	nc      *nats.Conn
}

// composeTool is the Compose on this machine: the v2 plugin if it answers,
// else Debian's docker-compose (v1).
func composeTool() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	return nil
}

// dotenv reads KEY=VALUE lines.
func dotenv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// upStack starts the stack and waits until every service is healthy.
func upStack(t *testing.T) *stack {
	t.Helper()
	e2etest.Need(t, exec.Command("docker", "info").Run() == nil, "no Docker engine answers `docker info`")
	tool := composeTool()
	e2etest.Need(t, tool != nil, "neither `docker compose` nor `docker-compose` is installed")
	s := &stack{t: t, compose: tool, project: "spectora-e2e", env: dotenv(t, filepath.Join(root, ".env.example"))}
	for _, k := range []string{"SPECTORA_STREAM_IMAGE", "NATS_IMAGE", "JAEGER_IMAGE", "LB_IMAGE"} {
		s.env[k] = os.Getenv(k)
	}
	if s.env["SPECTORA_STREAM_IMAGE"] == "" {
		t.Log("image variables unset: building the local images (deploy/compose/local-images.sh)")
		out, err := exec.Command("bash", filepath.Join(root, "deploy", "compose", "local-images.sh")).Output()
		if err != nil {
			t.Fatalf("local-images.sh: %v", err)
		}
		for _, line := range strings.Fields(string(out)) {
			if k, v, ok := strings.Cut(line, "="); ok {
				s.env[k] = v
			}
		}
	}
	// The test sends the webhooks itself; the simulator serves the API, fast
	// enough that backlogs drain while the test waits.
	s.env["SIM_RATE"] = "0"
	s.env["SPECTORA_API_RATE_LIMIT"] = "200"
	s.envFile = filepath.Join(t.TempDir(), "e2e.env")
	var b strings.Builder
	for k, v := range s.env {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	if err := os.WriteFile(s.envFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run("down", "-v", "--remove-orphans") // leftovers of an interrupted run
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.output("logs", "--tail", "40")
			t.Logf("--- compose logs (last 40 lines per service) ---\n%s", out)
		}
		s.run("down", "-v", "--remove-orphans")
	})
	start := time.Now()
	if out, err := s.output("up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	s.waitHealthy()
	t.Logf("stack healthy %s after `up`", time.Since(start).Round(time.Second))
	s.connect()
	return s
}

func (s *stack) cmd(args ...string) *exec.Cmd {
	full := append(append([]string{}, s.compose[1:]...), "-p", s.project, "--env-file", s.envFile)
	full = append(full, args...)
	c := exec.Command(s.compose[0], full...)
	c.Dir = root
	return c
}

func (s *stack) output(args ...string) (string, error) {
	out, err := s.cmd(args...).CombinedOutput()
	return string(out), err
}

func (s *stack) run(args ...string) {
	if out, err := s.output(args...); err != nil {
		s.t.Logf("compose %v: %v\n%s", args, err, out)
	}
}

// containers are the ids of service's containers, in a stable order.
func (s *stack) containers(service string) []string {
	out, err := exec.Command("docker", "ps", "-a", "-q", "--no-trunc",
		"--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.service="+service).Output()
	if err != nil {
		s.t.Fatal(err)
	}
	ids := strings.Fields(string(out))
	sort.Strings(ids)
	return ids
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitHealthy waits until every container of the project runs, and is
// healthy where it has a health check.
func (s *stack) waitHealthy() {
	s.t.Helper()
	eventually(s.t, 4*time.Minute, "every service healthy", func() bool {
		out, err := exec.Command("docker", "ps", "-a", "--filter", "label=com.docker.compose.project="+s.project,
			"--format", "{{.Label \"com.docker.compose.service\"}} {{.Status}}").Output()
		if err != nil || len(out) == 0 {
			return false
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.Contains(line, " Up ") || strings.Contains(line, "starting") || strings.Contains(line, "unhealthy") {
				return false
			}
		}
		return true
	})
}

// with is s reporting to t, for use inside a subtest.
func (s *stack) with(t *testing.T) *stack {
	c := *s
	c.t = t
	return &c
}

// connect opens the test's own NATS connection, as the operator user.
func (s *stack) connect() {
	s.t.Helper()
	nc, err := nats.Connect("nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224",
		nats.UserInfo("operator", s.env["NATS_OPERATOR_PASSWORD"]), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	s.nc = nc
	s.js, _ = jetstream.New(nc)
}

// traffic is the Svix-faithful sender driving the stack through lb, with a
// record of every event that got a 2xx and of every failed attempt.
type traffic struct {
	sender    *sim.Sender
	mu        sync.Mutex
	delivered map[string]bool
	failures  []time.Time
	stop      context.CancelFunc
	done      chan struct{}
}

func startTraffic(t *testing.T, s *stack, rate float64) *traffic {
	t.Helper()
	tr := &traffic{delivered: map[string]bool{}, done: make(chan struct{})}
	var err error
	tr.sender, err = sim.NewSender(sim.SenderConfig{
		URL: "http://127.0.0.1:8080/webhooks/spectora", Secret: s.env["SPECTORA_WEBHOOK_SECRET"], Rate: rate,
		TimeScale: 0.01, // Svix's schedule at 1/100: 50 ms, 3 s, 18 s, 72 s…
		OnAttempt: func(ev sim.Event, _, status int, err error) {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if err == nil && status >= 200 && status < 300 {
				tr.delivered[ev.MsgID] = true
			} else {
				tr.failures = append(tr.failures, time.Now())
			}
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	gen, stop := context.WithCancel(context.Background())
	tr.stop = stop
	go func() {
		defer close(tr.done)
		_ = tr.sender.RunUntil(gen, context.Background(), sim.NewScript(sim.NewStore(1000)))
	}()
	return tr
}

// finish stops making events and waits for the retries in flight.
func (tr *traffic) finish(t *testing.T) {
	t.Helper()
	tr.stop()
	select {
	case <-tr.done:
	case <-time.After(5 * time.Minute):
		t.Fatal("deliveries still retrying after 5 minutes")
	}
	t.Logf("traffic: %s", tr.sender.Stats.String())
}

func (tr *traffic) snapshot() (ids []string, failures []time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for id := range tr.delivered {
		ids = append(ids, id)
	}
	return ids, append([]time.Time(nil), tr.failures...)
}

// readIDs counts the message IDs of the events in a stream (redrives
// excluded). It reads until it has seen the stream's last sequence, and
// fails the test when it can't: an empty answer right after a leader change
// is never taken for an empty stream.
func (s *stack) readIDs(name string) map[string]int {
	s.t.Helper()
	out := map[string]int{}
	var last, seen uint64
	eventually(s.t, 2*time.Minute, "every message of "+name+" read", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil {
			return false
		}
		last = info.State.LastSeq
		if info.State.Msgs == 0 {
			return true
		}
		clear(out)
		seen = 0
		oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return false
		}
		for seen < last {
			batch, err := oc.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				return false
			}
			n := 0
			for m := range batch.Messages() {
				n++
				md, err := m.Metadata()
				if err != nil {
					return false
				}
				seen = md.Sequence.Stream
				if p, err := stream.ParseSubject(m.Subject()); err == nil && p.Redrive == 0 {
					out[m.Headers().Get(stream.HeaderMsgID)]++
				}
			}
			if batch.Error() != nil || n == 0 {
				return false
			}
		}
		return true
	})
	return out
}

// settled waits until group has processed everything in its stream.
func (s *stack) settled(streamName, group string) {
	s.t.Helper()
	eventually(s.t, 3*time.Minute, group+" done with "+streamName, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := s.js.Consumer(ctx, streamName, group)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// replicasCurrent waits until every stream has its three replicas current.
func (s *stack) replicasCurrent() {
	s.t.Helper()
	eventually(s.t, 2*time.Minute, "three current replicas of every stream", func() bool {
		for _, name := range []string{stream.Raw, stream.Enriched, stream.DLQ} {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			st, err := s.js.Stream(ctx, name)
			if err != nil {
				cancel()
				return false
			}
			info, err := st.Info(ctx)
			cancel()
			if err != nil || info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				return false
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					return false
				}
			}
		}
		return true
	})
}

// auditLines reads every audit file from the consumers' shared volume.
func (s *stack) auditLines() map[string]int {
	s.t.Helper()
	ids := s.containers("consumers")
	if len(ids) == 0 {
		s.t.Fatal("no consumers container")
	}
	dir := s.t.TempDir()
	docker(s.t, "cp", ids[0]+":/var/lib/spectora/.", dir)
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	out := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var e audit.Entry
			if json.Unmarshal([]byte(line), &e) == nil && e.ID != "" {
				out[e.ID]++
			}
		}
	}
	return out
}

// check is what must hold after every fault: every event that got a 2xx is
// in SPECTORA exactly once, at three replicas; the enricher republished each
// once; the audit log has each at least once (duplicates counted).
func (s *stack) check(t *testing.T, tr *traffic) {
	t.Helper()
	s = s.with(t)
	s.replicasCurrent()
	ids, _ := tr.snapshot()
	raw := s.readIDs(stream.Raw)
	for _, id := range ids {
		if raw[id] != 1 {
			t.Errorf("%s got a 2xx but is in %s %d times", id, stream.Raw, raw[id])
		}
	}
	for id, n := range raw {
		if n > 1 {
			t.Errorf("%s stored %d times", id, n)
		}
	}
	s.settled(stream.Raw, "enricher")
	s.settled(stream.Enriched, "audit")
	enriched := s.readIDs(stream.Enriched)
	lines := s.auditLines()
	dups := 0
	for _, id := range ids {
		if enriched[id] != 1 {
			t.Errorf("%s enriched %d times", id, enriched[id])
		}
		switch n := lines[id]; {
		case n == 0:
			t.Errorf("%s has no audit line", id)
		case n > 1:
			dups += n - 1
		}
	}
	t.Logf("checked %d acknowledged events: each stored once at R3, enriched once; audit lines %d, %d duplicates (at-least-once)",
		len(ids), len(lines), dups)
}

// failoverWindow is how long the sender saw failures after t0: first to last.
func failoverWindow(tr *traffic, t0 time.Time) (time.Duration, int) {
	_, failures := tr.snapshot()
	var first, last time.Time
	n := 0
	for _, f := range failures {
		if f.Before(t0) {
			continue
		}
		n++
		if first.IsZero() {
			first = f
		}
		last = f
	}
	if n == 0 {
		return 0, 0
	}
	return last.Sub(first), n
}

// streamLeader is the server leading a stream.
func (s *stack) streamLeader(name string) string {
	s.t.Helper()
	var leader string
	eventually(s.t, time.Minute, name+" has a leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		leader = info.Cluster.Leader
		return leader != ""
	})
	return leader
}

// stats is each container's memory use, from docker stats.
func (s *stack) stats(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}\t{{.CPUPerc}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, s.project) {
			keep = append(keep, line)
		}
	}
	sort.Strings(keep)
	return strings.Join(keep, "\n")
}

var rateLine = regexp.MustCompile(`rate:\s+(\d+) req/s`)

// bench runs the bench command against lb and returns its rate and output.
func (s *stack) bench(t *testing.T, d time.Duration) (string, string) {
	t.Helper()
	c := exec.Command(binary(t), "bench", "-c", "64", "-d", d.String(), "--spectora-gateway-url", "http://127.0.0.1:8080/webhooks/spectora")
	c.Env = append(os.Environ(), "SPECTORA_WEBHOOK_SECRET="+s.env["SPECTORA_WEBHOOK_SECRET"])
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	m := rateLine.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no rate in bench output:\n%s", out)
	}
	return m[1], string(out)
}

// poison stores an event no group can decode, as the gateway user: the
// enricher dead-letters it, so the stack has a dead letter to keep.
func (s *stack) poison(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.UserInfo("gateway", s.env["NATS_GATEWAY_PASSWORD"]))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	msg := nats.NewMsg("spectora.inspection.confirmed")
	msg.Header.Set(stream.HeaderContentType, stream.ContentTypeWebhookEvent)
	msg.Data = []byte{0xff, 0xfe, 0xfd}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID("msg_e2e_poison")); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the poisoned event dead-lettered", func() bool { return s.msgs(stream.DLQ) >= 1 })
}

func (s *stack) msgs(name string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// The production shape, for real: three NATS nodes at R3, two gateways
// behind the load balancer, two consumers replicas, Jaeger, all as
// containers; Svix-style traffic through node loss, a partition, killed
// replicas and a restart of the whole stack, with nothing acknowledged lost
// or stored twice.
func TestComposeStackSurvivesFaults(t *testing.T) {
	s := upStack(t)
	atRest := s.stats(t)
	s.poison(t)
	tr := startTraffic(t, s, 20)
	time.Sleep(20 * time.Second)
	t.Run("steady traffic", func(t *testing.T) { s.check(t, tr) })

	t.Run("stream leader killed", func(t *testing.T) {
		s := s.with(t)
		leader := s.streamLeader(stream.Raw)
		ids := s.containers(leader)
		if len(ids) != 1 {
			t.Fatalf("no container for the leader %q", leader)
		}
		t0 := time.Now()
		docker(t, "kill", ids[0])
		eventually(t, time.Minute, "a new leader", func() bool { return s.streamLeader(stream.Raw) != leader })
		elected := time.Since(t0)
		time.Sleep(10 * time.Second) // traffic on the surviving two
		window, n := failoverWindow(tr, t0)
		t.Logf("NUMBERS leader %s killed: new leader after %s; the sender saw %d failed attempts over %s (first to last)",
			leader, elected.Round(100*time.Millisecond), n, window.Round(100*time.Millisecond))
		docker(t, "start", ids[0])
		s.check(t, tr)
	})

	t.Run("NATS node partitioned for 30s", func(t *testing.T) {
		s := s.with(t)
		node := s.streamLeader(stream.Raw)
		id := s.containers(node)[0]
		network := s.project + "_default"
		docker(t, "network", "disconnect", network, id)
		time.Sleep(30 * time.Second)
		docker(t, "network", "connect", "--alias", node, network, id)
		s.check(t, tr) // waits for it to catch up: three current replicas
	})

	t.Run("gateway replica SIGKILLed", func(t *testing.T) {
		s := s.with(t)
		ids := s.containers("gateway")
		t0 := time.Now()
		docker(t, "kill", "--signal", "KILL", ids[0])
		time.Sleep(10 * time.Second)
		window, n := failoverWindow(tr, t0)
		t.Logf("NUMBERS gateway killed: the sender saw %d failed attempts over %s", n, window.Round(100*time.Millisecond))
		docker(t, "start", ids[0])
		s.check(t, tr)
	})

	t.Run("consumers replica SIGKILLed mid-batch", func(t *testing.T) {
		s := s.with(t)
		ids := s.containers("consumers")
		docker(t, "kill", "--signal", "KILL", ids[0])
		time.Sleep(5 * time.Second)
		docker(t, "start", ids[0])
		s.check(t, tr) // the other replica takes over once the ack wait (30s) passes
	})

	tr.finish(t)
	t.Run("after the traffic", func(t *testing.T) { s.check(t, tr) })

	t.Run("one webhook is one trace across gateway and consumers", func(t *testing.T) {
		// The traffic mixes event types, so only the gateway's own span is
		// required by name: asking for "send spectora.inspection.confirmed"
		// among 20 IDs from a map missed every time none of them was one
		// (about one CI run in eight).
		ids, _ := tr.snapshot()
		sort.Strings(ids)
		eventually(t, time.Minute, "a trace spanning both services", func() bool {
			for _, id := range ids[:min(len(ids), 40)] {
				tr := e2etest.FindTrace("http://127.0.0.1:16686", id, map[string]string{"verify webhook": "spectora-gateway"})
				if tr == nil {
					continue
				}
				services := map[string]bool{}
				for _, p := range tr.Processes {
					services[p.ServiceName] = true
				}
				if services["spectora-gateway"] && services["spectora-consumers"] {
					t.Logf("trace %s: %d spans from %v", tr.TraceID, len(tr.Spans), services)
					return true
				}
			}
			return false
		})
	})

	t.Run("the console reads the cluster", func(t *testing.T) {
		// One webhook for a record of our own, through lb.
		signer, err := webhook.NewSigner(s.env["SPECTORA_WEBHOOK_SECRET"])
		if err != nil {
			t.Fatal(err)
		}
		body := webhook.Body("inspection.confirmed", "e2e-console-7", nil)
		hdr, _ := signer.Headers(webhook.NewMessageID(), time.Now(), body)
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/webhooks/spectora", bytes.NewReader(body))
		req.Header = hdr
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %v %v", resp, err)
		}
		_ = resp.Body.Close()
		// Log in with the first of .env's ADMIN_TOKENS.
		first, _, _ := strings.Cut(s.env["ADMIN_TOKENS"], ",")
		_, token, _ := strings.Cut(first, "=")
		login, err := noRedirect.PostForm("http://127.0.0.1:8081/login", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		_ = login.Body.Close()
		if len(login.Cookies()) != 1 {
			t.Fatalf("console login: %s, cookies %v", login.Status, login.Cookies())
		}
		page := func(path string) string {
			req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8081"+path, nil)
			req.AddCookie(login.Cookies()[0])
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("console %s: %s", path, resp.Status)
			}
			return string(b)
		}
		// The indexer group (on in compose) finds it by record ID.
		eventually(t, time.Minute, "the event found by record ID", func() bool {
			return strings.Count(page("/events?record=e2e-console-7"), `<td><a href="/events/`) == 1
		})
		// Both gateway replicas are read through the service's DNS name.
		eventually(t, time.Minute, "the health page reading both gateways", func() bool {
			return strings.Contains(page("/health"), "Read from 2 gateways")
		})
		// The streams' two followers on the three-node cluster.
		if groups := page("/groups"); !strings.Contains(groups, `<tr id="group-enricher">`) || !strings.Contains(groups, "of 2 followers current") {
			t.Errorf("groups page lacks the enricher or the streams' followers")
		}
	})

	t.Run("down and up keeps everything", func(t *testing.T) {
		s := s.with(t)
		before := map[string]uint64{}
		for _, n := range []string{stream.Raw, stream.Enriched, stream.DLQ} {
			before[n] = s.msgs(n)
		}
		s.settled(stream.Raw, "enricher")
		s.run("down")
		if out, err := s.output("up", "-d"); err != nil {
			t.Fatalf("up: %v\n%s", err, out)
		}
		s.waitHealthy()
		for n, want := range before {
			if got := s.msgs(n); got != want {
				t.Errorf("%s holds %d after down/up, %d before", n, got, want)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := s.js.KeyValue(ctx, stream.RecordBucket)
		if err != nil {
			t.Fatalf("record cache bucket: %v", err)
		}
		keys, err := kv.ListKeys(ctx)
		n := 0
		for range keys.Keys() {
			n++
		}
		if err != nil || n == 0 {
			t.Errorf("record cache empty after down/up (%v)", err)
		}
		for _, g := range []struct{ stream, group string }{{stream.Raw, "enricher"}, {stream.Enriched, "audit"}} {
			if _, err := s.js.Consumer(ctx, g.stream, g.group); err != nil {
				t.Errorf("group %s gone after down/up: %v", g.group, err)
			}
		}
		// Processing resumes where it stopped.
		more := startTraffic(t, s, 10)
		time.Sleep(3 * time.Second)
		more.finish(t)
		ids, _ := more.snapshot()
		s.settled(stream.Raw, "enricher")
		enriched := s.readIDs(stream.Enriched)
		for _, id := range ids {
			if enriched[id] != 1 {
				t.Errorf("%s sent after the restart: enriched %d times", id, enriched[id])
			}
		}
		t.Logf("after down/up: %d cached records, %d dead letters kept, %d new events processed", n, s.msgs(stream.DLQ), len(ids))
	})
	// Last: the bench's events leave a backlog nobody waits for.
	t.Run("throughput and memory", func(t *testing.T) {
		s := s.with(t)
		var load string
		done := make(chan struct{})
		go func() {
			time.Sleep(5 * time.Second)
			load = s.stats(t)
			close(done)
		}()
		two, _ := s.bench(t, 10*time.Second)
		<-done
		s.run("up", "-d", "--no-recreate", "--scale", "gateway=1")
		time.Sleep(3 * time.Second) // lb's DNS refresh
		one, _ := s.bench(t, 10*time.Second)
		s.run("up", "-d", "--no-recreate", "--scale", "gateway=2")
		s.waitHealthy()
		t.Logf("NUMBERS through lb, bench -c 64 -d 10s: %s req/s with two gateways, %s req/s with one", two, one)
		t.Logf("NUMBERS memory at rest:\n%s", atRest)
		t.Logf("NUMBERS memory under load:\n%s", load)
	})

}

var noRedirect = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
