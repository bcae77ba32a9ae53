package sim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
	"github.com/spectora-stream/spectora-stream/stream"
)

func secret(t *testing.T) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// liveGateway runs the real gateway on loopback against a JetStream server at
// a fixed port, so the server can be stopped and started again.
type liveGateway struct {
	url    string
	js     jetstream.JetStream
	port   int
	store  string
	srv    *server.Server
	secret string
}

func freePort(t *testing.T) int {
	_, port, _ := net.SplitHostPort(natstest.FreeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

func startGateway(t *testing.T, withNATS bool) *liveGateway {
	t.Helper()
	g := &liveGateway{port: freePort(t), store: t.TempDir(), secret: secret(t)}
	if withNATS {
		g.startNATS(t)
	}
	nc, err := nats.Connect("nats://127.0.0.1:"+itoa(g.port), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	g.js, _ = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(2*time.Second))
	gw, err := gateway.New(gateway.Config{Secrets: []string{g.secret}, PublishTimeout: 2 * time.Second},
		g.js, natsx.NewHealth(&natsx.Conn{NC: nc}, g.js))
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = gw.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	g.url = "http://" + ln.Addr().String() + "/webhooks/spectora"
	return g
}

func itoa(n int) string { return strconv.Itoa(n) }

func (g *liveGateway) startNATS(t *testing.T) {
	t.Helper()
	g.srv = natstest.ServerWith(t, &server.Options{JetStream: true, StoreDir: g.store, Port: g.port})
	_, js := natstest.JetStream(t, g.srv)
	if _, err := natsx.EnsureStream(context.Background(), js, stream.RawConfig(stream.DefaultLimits()), nil); err != nil {
		t.Fatal(err)
	}
}

// stored returns the event types stored in SPECTORA, by svix ID.
func (g *liveGateway) stored(t *testing.T) map[string]string {
	t.Helper()
	_, js := natstest.JetStream(t, g.srv)
	s, err := js.Stream(context.Background(), stream.Raw)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(context.Background())
	out := map[string]string{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(stream.HeaderMsgID)
		if _, dup := out[id]; dup {
			t.Fatalf("%s stored twice", id)
		}
		out[id] = m.Header.Get(stream.HeaderEventType)
	}
	return out
}

func TestAllElevenEventTypesArriveAndMatchTheAPI(t *testing.T) {
	g := startGateway(t, true)
	store := NewStore(100)
	store.Strict = true
	api := httptest.NewServer(NewAPI(APIConfig{Token: "tok"}, store))
	defer api.Close()
	s, err := NewSender(SenderConfig{URL: g.url, Secret: g.secret, Rate: 200, Count: RoundLength}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), NewScript(store)); err != nil {
		t.Fatal(err)
	}
	if s.Stats.Delivered.Load() != RoundLength || s.Stats.Failed.Load() != 0 {
		t.Fatalf("stats: %s", s.Stats.String())
	}
	types := map[string]bool{}
	for _, typ := range g.stored(t) {
		types[typ] = true
	}
	for _, want := range append(append([]string{}, webhook.EventTypes...), "inspection.rescheduled") {
		if !types[want] {
			t.Errorf("%s never arrived (got %v)", want, types)
		}
	}
	get := func(path, token string) int {
		req, _ := http.NewRequest(http.MethodGet, api.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == 200 {
			var doc struct {
				Data struct {
					ID, Type   string
					Attributes map[string]any
				}
			}
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.Data.ID == "" || len(doc.Data.Attributes) == 0 {
				t.Fatalf("%s: bad JSON:API document (%v)", path, err)
			}
		}
		return resp.StatusCode
	}
	// Round one: agent 101, client 102, inspection 103 (published), inspection 104 (deleted).
	for path, want := range map[string]int{
		"/v2/inspections/103": 200, "/v2/inspections/104": 404, "/v2/connections/101": 404,
		"/v2/contacts/102": 404, "/v2/inspections/999": 404,
	} {
		if got := get(path, "tok"); got != want {
			t.Errorf("GET %s = %d, want %d", path, got, want)
		}
	}
	if got := get("/v2/inspections/103", "wrong"); got != 401 {
		t.Errorf("wrong token: %d", got)
	}
}

func TestRetriesFollowTheScheduleWithFreshSignatures(t *testing.T) {
	var (
		mu       sync.Mutex
		attempts []http.Header
	)
	sec := secret(t)
	verifier, err := gateway.NewVerifier("TEST", []string{sec})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, r.Header.Clone())
		if len(attempts) < 4 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	var slept []time.Duration
	s, _ := NewSender(SenderConfig{URL: srv.URL, Secret: sec, TimeScale: 0.001, Sleep: func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}}, nil)
	body := webhook.Body("inspection.confirmed", "1", nil)
	if !s.Deliver(context.Background(), Event{MsgID: "msg_retry", Type: "inspection.confirmed", Body: body}) {
		t.Fatal("not delivered")
	}
	want := []time.Duration{5 * time.Millisecond, 300 * time.Millisecond, 1800 * time.Millisecond}
	if len(slept) != 3 {
		t.Fatalf("slept %v, want %v", slept, want)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Fatalf("slept %v, want %v (Svix's schedule × 0.001)", slept, want)
		}
	}
	for i, h := range attempts {
		if h.Get("svix-id") != "msg_retry" {
			t.Fatalf("attempt %d has svix-id %q", i, h.Get("svix-id"))
		}
		sh, err := gateway.ReadSignedHeaders(h.Get)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifier.Verify(sh, body); err != nil {
			t.Fatalf("attempt %d not validly signed: %v", i, err)
		}
	}
	if s.Stats.Attempts.Load() != 4 || s.Stats.Retried.Load() != 3 || s.Stats.Delivered.Load() != 1 {
		t.Fatalf("stats %s", s.Stats.String())
	}

	// A receiver that never answers 2xx exhausts the whole schedule.
	var n atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { n.Add(1); w.WriteHeader(500) }))
	defer down.Close()
	s2, _ := NewSender(SenderConfig{URL: down.URL, Secret: sec, Sleep: func(context.Context, time.Duration) error { return nil }}, nil)
	if s2.Deliver(context.Background(), Event{MsgID: "msg_x", Body: body}) || n.Load() != int64(len(SvixSchedule)) || s2.Stats.Failed.Load() != 1 {
		t.Fatalf("attempts %d, stats %s", n.Load(), s2.Stats.String())
	}
}

func TestGatewayAnswering503ForAWhileStillGetsEveryEventOnce(t *testing.T) {
	g := startGateway(t, false) // JetStream down: the gateway answers 503
	store := NewStore(0)
	// Svix's schedule × 0.0002: retries after 1 ms, 60 ms, 360 ms, 1.44 s, 3.6 s, …
	s, _ := NewSender(SenderConfig{URL: g.url, Secret: g.secret, Rate: 100, Count: 20, TimeScale: 0.0002}, nil)
	done := make(chan struct{})
	go func() { _ = s.Run(context.Background(), NewScript(store)); close(done) }()
	time.Sleep(500 * time.Millisecond)
	if s.Stats.Delivered.Load() != 0 || s.Stats.Retried.Load() == 0 {
		t.Fatalf("while down: %s", s.Stats.String())
	}
	g.startNATS(t) // JetStream is back
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("sender still retrying: %s", s.Stats.String())
	}
	if s.Stats.Delivered.Load() != 20 || s.Stats.Failed.Load() != 0 {
		t.Fatalf("stats %s", s.Stats.String())
	}
	if got := len(g.stored(t)); got != 20 {
		t.Fatalf("stored %d events, want 20 exactly once", got)
	}
	t.Logf("sender: %s", s.Stats.String())
}
