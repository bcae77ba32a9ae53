package consumers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

type ctxT = context.Context

// env is a real in-process JetStream with the three streams and the record bucket.
type env struct {
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	metrics *Metrics
	store   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	store := t.TempDir()
	return newEnvAt(t, store)
}

func newEnvAt(t *testing.T, store string) *env {
	t.Helper()
	e := &env{store: store}
	e.srv = natstest.ServerWith(t, &server.Options{JetStream: true, StoreDir: store})
	e.nc, e.js = natstest.JetStream(t, e.srv)
	ctx := context.Background()
	sc := natsx.DefaultStreamConfig()
	for _, cfg := range natsx.StreamConfigs(sc, 0) {
		if _, err := natsx.EnsureStream(ctx, e.js, cfg, nil); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if e.kv, err = EnsureRecordBucket(ctx, e.js, RecordBucketConfig(natsx.RecordBucket, time.Hour, 1)); err != nil {
		t.Fatal(err)
	}
	if e.metrics, err = NewMetrics(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	return e
}

// publish stores a raw event like the gateway does and returns its sequence.
func (e *env) publish(t *testing.T, id, eventType, recordID string) uint64 {
	t.Helper()
	parts := strings.SplitN(eventType, ".", 2)
	ev := &spectorav1.WebhookEvent{
		Id: id, Type: eventType, Resource: parts[0], Action: parts[1], RecordId: recordID, Source: "default",
		Subject: "spectora." + eventType, ReceivedAt: timestamppb.Now(), SignedAt: timestamppb.Now(),
		ContentType: "application/json", Body: []byte(fmt.Sprintf(`{"type":%q,"id":%q}`, eventType, recordID)),
	}
	data, _ := proto.Marshal(ev)
	msg := nats.NewMsg(ev.Subject)
	msg.Data = data
	msg.Header.Set(natsx.HeaderContentType, natsx.ContentTypeWebhookEvent)
	msg.Header.Set(natsx.HeaderEventType, eventType)
	msg.Header.Set(natsx.HeaderRecordID, recordID)
	msg.Header.Set(natsx.HeaderSource, "default")
	ack, err := e.js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(id))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// start runs a group until the test ends.
func (e *env) start(t *testing.T, cfg Config) *Group {
	t.Helper()
	g, err := NewGroup(cfg, e.js, e.metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Stop(ctx)
	})
	return g
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, what, cond)
}

// recorder is a handler that remembers what it saw.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
	n    atomic.Int64
}

func newRecorder() *recorder { return &recorder{seen: map[string]int{}} }

func (r *recorder) handler(_ context.Context, m *Message) error {
	r.mu.Lock()
	r.seen[m.Event.GetId()]++
	r.mu.Unlock()
	r.n.Add(1)
	return nil
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id]
}

// fakeAPI is a Spectora API stand-in for tests: JSON:API records, a call
// counter, and knobs for latency, failures, 429s and deleted records.
type fakeAPI struct {
	*httptest.Server
	calls     atomic.Int64
	latency   time.Duration
	fail500   atomic.Int64 // answer 500 this many more times
	fail429   atomic.Int64 // answer 429 this many more times
	retryHdr  string
	mu        sync.Mutex
	gone      map[string]bool
	callTimes []time.Time
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{gone: map[string]bool{}, retryHdr: "1"}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.mu.Lock()
		f.callTimes = append(f.callTimes, time.Now())
		gone := f.gone[r.URL.Path]
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer test-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		time.Sleep(f.latency)
		if f.fail429.Add(-1) >= 0 {
			w.Header().Set("Retry-After", f.retryHdr)
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		if f.fail500.Add(-1) >= 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if gone {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		w.Header().Set("Content-Type", "application/vnd.api+json")
		fmt.Fprintf(w, `{"data":{"id":%q,"type":%q,"attributes":{"path":%q}}}`, parts[len(parts)-1], parts[len(parts)-2], r.URL.Path)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) client(t *testing.T, m *Metrics) *APIClient {
	t.Helper()
	c, err := NewAPIClient(APIConfig{BaseURL: f.URL, Token: "test-token", RateLimit: 1000, RateBurst: 100}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
