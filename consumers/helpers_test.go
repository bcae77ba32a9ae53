package consumers_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
)

// env is a real in-process JetStream with the three streams.
type env struct {
	srv     *server.Server
	js      jetstream.JetStream
	reg     *prometheus.Registry
	metrics *consumers.Metrics
}

func newEnv(t *testing.T) *env { return newEnvAt(t, t.TempDir()) }

func newEnvAt(t *testing.T, store string) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry()}
	e.srv = natstest.ServerWith(t, &server.Options{JetStream: true, StoreDir: store})
	_, e.js = natstest.JetStream(t, e.srv)
	natstest.Streams(t, e.js)
	var err error
	if e.metrics, err = consumers.NewMetrics(e.reg); err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs a group until the test ends.
func (e *env) start(t *testing.T, cfg consumers.Config) *natstest.Runner {
	t.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = e.metrics
	}
	g, err := consumers.NewGroup(cfg, e.js)
	if err != nil {
		t.Fatal(err)
	}
	return natstest.Run(t, g)
}

func (e *env) publish(t *testing.T, id, eventType, recordID string) uint64 {
	t.Helper()
	return natstest.Publish(t, e.js, id, eventType, recordID)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	natstest.Eventually(t, natstest.Patience, what, cond)
}

// recorder is a handler that remembers what it saw.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
	n    atomic.Int64
}

func newRecorder() *recorder { return &recorder{seen: map[string]int{}} }

func (r *recorder) handler(_ context.Context, m *consumers.Message) error {
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
