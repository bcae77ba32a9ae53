package ops_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spectora-stream/spectora-stream/internal/ops"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpointsAndCachedReadiness(t *testing.T) {
	t.Parallel()
	var checks atomic.Int64
	var failing atomic.Bool
	ready := ops.NewReadiness(func(context.Context) error {
		checks.Add(1)
		if failing.Load() {
			return errors.New("stream SPECTORA: not found")
		}
		return nil
	}, time.Hour)
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "spectora_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Inc()
	srv, err := ops.Listen("METRICS_ADDR", "127.0.0.1:0", ops.Handler(ops.Options{Gatherer: reg, Readiness: ready}), nil)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr()
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz %d %s", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "spectora_test_total 1") {
		t.Fatalf("/metrics %d %s", code, body)
	}
	for range 50 {
		if code, _ := get(t, base+"/readyz"); code != 200 {
			t.Fatalf("/readyz %d", code)
		}
	}
	if checks.Load() != 1 {
		t.Fatalf("50 probes ran the check %d times, want 1 (cached)", checks.Load())
	}
	ready.SetDraining()
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Fatalf("draining /readyz %d %s", code, body)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 404 {
		t.Fatalf("pprof served without being asked for: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
}

func TestReadinessFailureIsReported(t *testing.T) {
	t.Parallel()
	ready := ops.NewReadiness(func(context.Context) error { return errors.New("NATS not connected") }, time.Millisecond)
	if err := ready.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "NATS") {
		t.Fatalf("Ready = %v", err)
	}
}
