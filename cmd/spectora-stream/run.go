package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/telemetry"
)

type serveCmd struct {
	NATS      natsFlags     `embed:""`
	Gateway   gatewayFlags  `embed:""`
	Consumers consumerFlags `embed:""`
}

// Run runs the gateway and the built-in consumer groups in one process.
func (c *serveCmd) Run(ctx context.Context, log *slog.Logger) error {
	return run(ctx, log, c.NATS, &c.Gateway, &c.Consumers, "spectora-stream", "")
}

type gatewayCmd struct {
	NATS    natsFlags    `embed:""`
	Gateway gatewayFlags `embed:""`
}

// Run runs the gateway alone.
func (c *gatewayCmd) Run(ctx context.Context, log *slog.Logger) error {
	return run(ctx, log, c.NATS, &c.Gateway, nil, "spectora-gateway", "")
}

type consumersCmd struct {
	NATS        natsFlags     `embed:""`
	Consumers   consumerFlags `embed:""`
	MetricsAddr string        `name:"metrics-addr" env:"METRICS_ADDR" default:":9090" help:"Address serving /metrics, /healthz and /readyz when consumers run without the gateway (${env})."`
}

// Run runs the built-in consumer groups alone, with their own metrics listener.
func (c *consumersCmd) Run(ctx context.Context, log *slog.Logger) error {
	return run(ctx, log, c.NATS, nil, &c.Consumers, "spectora-consumers", c.MetricsAddr)
}

// run wires what the command asks for, serves until ctx ends, then shuts down
// in order: gateway (not ready, stop accepting, finish in-flight), consumer
// groups (stop pulling, finish or hand back), NATS drain, embedded server.
// metricsAddr, when set, serves the consumers' metrics and probes on their own
// listener (the gateway serves them on HTTP_ADDR).
func run(ctx context.Context, log *slog.Logger, nf natsFlags, gf *gatewayFlags, cf *consumerFlags, connName, metricsAddr string) error {
	publishTimeout := 5 * time.Second
	var gcfg gateway.Config
	if gf != nil {
		var err error
		if gcfg, err = gf.config(); err != nil {
			return err
		}
		if err := gcfg.Validate(); err != nil {
			return err
		}
		publishTimeout = gf.PublishTimeout
	}
	if cf != nil {
		if err := cf.validate(); err != nil {
			return err
		}
	}
	tel, err := telemetry.Setup(ctx, connName, buildVersion())
	if err != nil {
		return err
	}
	defer func() {
		// Flush spans last, after the groups and the gateway have finished.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flushing spans", "err", err)
		}
	}()
	if tel.Exporting {
		log.Info("tracing enabled", "service", connName, "note", "OTEL_SERVICE_NAME overrides the service name")
	}
	if tel.Exporting {
		gcfg.TracerProvider, gcfg.Propagator = tel.TracerProvider, tel.Propagator
	}
	a, err := openApp(ctx, log, nf, connName, publishTimeout)
	if err != nil {
		return err
	}
	a.tracing = consumers.Tracing{Provider: tel.TracerProvider, Propagator: tel.Propagator}
	defer a.close()

	var (
		gw     *runningGateway
		cons   *runningConsumers
		served <-chan error
	)
	if gf != nil {
		if gf.PprofAddr != "" {
			if err := servePprof(gf.PprofAddr, log); err != nil {
				return err
			}
		}
		if gw, err = startGateway(ctx, a, nf, *gf, gcfg); err != nil {
			return err
		}
		served = gw.served
	}
	if cf != nil {
		if cons, err = startConsumers(ctx, a, nf, *cf); err != nil {
			if gw != nil {
				gw.stop(a)
			}
			return err
		}
		if metricsAddr != "" {
			if err := serveMetrics(metricsAddr, a, log); err != nil {
				cons.stop(a)
				return err
			}
		}
	}

	var stopErr error
	select {
	case err := <-served:
		// The listener died: nothing to drain on the HTTP side, but the groups
		// still finish or hand back their messages before NATS closes.
		stopErr = fmt.Errorf("HTTP server stopped: %w", err)
		gw = nil
	case <-ctx.Done():
	}
	log.Info("shutting down")
	if gw != nil {
		gw.stop(a)
	}
	if cons != nil {
		cons.stop(a)
	}
	return stopErr
}

// serveMetrics serves /metrics, /healthz and /readyz for the consumers command.
func serveMetrics(addr string, a *app, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("METRICS_ADDR %q: %w", addr, err)
	}
	health := natsx.NewHealth(a.conn, a.js, natsx.RawStream, natsx.EnrichedStream, natsx.DLQStream)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := health.Ready(ctx); err != nil {
			http.Error(w, fmt.Sprintf(`{"ready":false,"reason":%q}`, err.Error()), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"ready":true}`))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("consumer metrics listening", "addr", ln.Addr().String())
	return nil
}
