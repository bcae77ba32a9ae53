// Package ops serves the operations endpoints every command shares on its
// ops address (METRICS_ADDR), apart from the webhook port: /metrics
// (Prometheus text), /healthz (the process is alive) and /readyz (NATS
// connected and the streams present; 503 while shutting down).
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrDraining is the readiness error while the process shuts down.
var ErrDraining = errors.New("shutting down")

// Readiness answers /readyz. The check (a JetStream API request) runs at most
// once per TTL, however often probes or strangers ask.
type Readiness struct {
	check    func(ctx context.Context) error
	ttl      time.Duration
	draining atomic.Bool

	mu      sync.Mutex
	checked time.Time
	last    error
}

// NewReadiness caches check's answer for ttl (default 1 s).
func NewReadiness(check func(ctx context.Context) error, ttl time.Duration) *Readiness {
	if ttl <= 0 {
		ttl = time.Second
	}
	return &Readiness{check: check, ttl: ttl}
}

// SetDraining makes Ready fail from now on, so load balancers stop sending
// work before listeners close.
func (r *Readiness) SetDraining() { r.draining.Store(true) }

// Ready returns nil when the process can take work.
func (r *Readiness) Ready(ctx context.Context) error {
	if r.draining.Load() {
		return ErrDraining
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < r.ttl {
		return r.last
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r.last = r.check(ctx)
	r.checked = time.Now()
	return r.last
}

// Options configures Handler.
type Options struct {
	// Gatherer is what /metrics serves.
	Gatherer prometheus.Gatherer
	// Readiness answers /readyz.
	Readiness *Readiness
	// Pprof mounts Go's profiles under /debug/pprof/.
	Pprof bool
}

// Handler serves the ops endpoints.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := o.Readiness.Ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	})
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is an HTTP listener the process shuts down with itself.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	served chan error
}

// Listen listens on addr and serves h in the background. setting names the
// address's setting in errors.
func Listen(setting, addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", setting, addr, err)
	}
	s := &Server{
		srv:    &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second},
		ln:     ln,
		served: make(chan error, 1),
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	if logger != nil {
		logger.Info("listening", "setting", setting, "addr", ln.Addr().String())
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
