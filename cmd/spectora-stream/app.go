package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
)

// app is one process's shared wiring: the NATS connection (and embedded
// server), JetStream and the metrics registry.
type app struct {
	log     *slog.Logger
	conn    *natsx.Conn
	js      jetstream.JetStream
	reg     *prometheus.Registry
	tracing consumers.Tracing
}

func openApp(ctx context.Context, log *slog.Logger, nf natsFlags, connName string, publishTimeout time.Duration) (*app, error) {
	if err := nf.stream().Validate(); err != nil {
		return nil, err
	}
	conn, err := natsx.Open(ctx, nf.config(connName), log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(conn.NC, nf.jetStreamOpts(publishTimeout)...)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &app{log: log, conn: conn, js: js, reg: reg}, nil
}

// ensure creates or updates streams, retrying while a cluster elects a leader.
func (a *app) ensure(ctx context.Context, nf natsFlags, cfgs ...jetstream.StreamConfig) error {
	ctx, cancel := context.WithTimeout(ctx, nf.SetupTimeout)
	defer cancel()
	for _, c := range cfgs {
		if _, err := natsx.EnsureStream(ctx, a.js, c, a.log); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) close() { a.conn.Close() }

// runningGateway is a serving gateway.
type runningGateway struct {
	gw     *gateway.Gateway
	served chan error
	flags  gatewayFlags
}

func startGateway(ctx context.Context, a *app, nf natsFlags, gf gatewayFlags, gcfg gateway.Config) (*runningGateway, error) {
	if err := a.ensure(ctx, nf, natsx.RawStreamConfig(nf.stream())); err != nil {
		return nil, err
	}
	gw, err := gateway.New(gcfg, a.js, natsx.NewHealth(a.conn, a.js, natsx.RawStream), a.reg, a.log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", gf.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %q: %w", gf.HTTPAddr, err)
	}
	r := &runningGateway{gw: gw, served: make(chan error, 1), flags: gf}
	go func() { r.served <- gw.Serve(ln) }()
	a.log.Info("gateway listening", "addr", ln.Addr().String(), "webhook", "POST /webhooks/spectora",
		"embedded_nats", a.conn.Embedded(), "nats_client_url", a.conn.EmbeddedURL(), "stream", natsx.RawStream)
	return r, nil
}

// stop: not ready, wait SHUTDOWN_DELAY, stop accepting, finish in-flight
// requests (each waits for its PubAck), then make sure no publish is pending.
func (r *runningGateway) stop(a *app) {
	r.gw.SetDraining()
	a.log.Info("gateway draining", "delay", r.flags.ShutdownDelay.String(), "timeout", r.flags.ShutdownTimeout.String())
	time.Sleep(r.flags.ShutdownDelay)
	ctx, cancel := context.WithTimeout(context.Background(), r.flags.ShutdownTimeout)
	defer cancel()
	if err := r.gw.Shutdown(ctx); err != nil {
		a.log.Warn("in-flight requests did not finish in time", "err", err)
	}
	select {
	case <-a.js.PublishAsyncComplete():
	case <-ctx.Done():
		a.log.Warn("publishes still awaiting a PubAck at shutdown", "pending", a.js.PublishAsyncPending())
	}
	if err := <-r.served; err != nil && !errors.Is(err, net.ErrClosed) {
		a.log.Warn("HTTP server", "err", err)
	}
	a.log.Info("gateway stopped")
}

// runningConsumers are the built-in groups of this process.
type runningConsumers struct {
	groups []*consumers.Group
	audit  *consumers.AuditLog
	flags  consumerFlags
}

func startConsumers(ctx context.Context, a *app, nf natsFlags, cf consumerFlags) (*runningConsumers, error) {
	names, err := cf.groups()
	if err != nil {
		return nil, err
	}
	sc := nf.stream()
	if err := a.ensure(ctx, nf, natsx.StreamConfigs(sc, cf.DLQMaxAge)...); err != nil {
		return nil, err
	}
	metrics, err := consumers.NewMetrics(a.reg)
	if err != nil {
		return nil, err
	}
	rc := &runningConsumers{flags: cf}
	var cfgs []consumers.Config
	for _, name := range names {
		base := consumers.Config{Name: name, Concurrency: cf.Concurrency, MaxDeliver: cf.MaxDeliver, Backoff: cf.Backoff, AckWait: cf.AckWait, Tracing: a.tracing}
		switch name {
		case consumers.EnricherGroup:
			enr, err := newEnricher(ctx, a, nf, cf, metrics)
			if err != nil {
				return nil, err
			}
			base.Handler = consumers.EnrichHandler(enr, a.js)
		case consumers.AuditGroup:
			if rc.audit, err = consumers.OpenAuditLog(cf.AuditLog); err != nil {
				return nil, err
			}
			base.Stream = natsx.EnrichedStream
			base.Handler = rc.audit.Handler()
		}
		cfgs = append(cfgs, base)
	}
	for _, cfg := range cfgs {
		g, err := consumers.NewGroup(cfg, a.js, metrics, a.log)
		if err != nil {
			rc.stop(a)
			return nil, err
		}
		if err := g.Start(ctx); err != nil {
			rc.stop(a)
			return nil, err
		}
		rc.groups = append(rc.groups, g)
	}
	return rc, nil
}

func newEnricher(ctx context.Context, a *app, nf natsFlags, cf consumerFlags, metrics *consumers.Metrics) (*consumers.Enricher, error) {
	kv, err := consumers.EnsureRecordBucket(ctx, a.js, consumers.RecordBucketConfig(natsx.RecordBucket, cf.CacheTTL, nf.Replicas))
	if err != nil {
		return nil, err
	}
	if cf.APIToken == "" {
		a.log.Warn("SPECTORA_API_TOKEN is unset: the enricher republishes events without records (record_status not_fetched). " +
			"Set it, or run `spectora-stream sim` and point SPECTORA_API_URL at it.")
		return consumers.NewEnricher(nil, kv, metrics, a.tracing, a.log), nil
	}
	cfg, err := cf.apiConfig(a.tracing)
	if err != nil {
		return nil, err
	}
	api, err := consumers.NewAPIClient(cfg, metrics, a.log)
	if err != nil {
		return nil, err
	}
	return consumers.NewEnricher(api, kv, metrics, a.tracing, a.log), nil
}

func (rc *runningConsumers) stop(a *app) {
	ctx, cancel := context.WithTimeout(context.Background(), rc.flags.DrainTimeout)
	defer cancel()
	for _, g := range rc.groups {
		if err := g.Stop(ctx); err != nil {
			a.log.Warn("consumer group stop", "group", g.Name(), "err", err)
		}
	}
	if rc.audit != nil {
		_ = rc.audit.Close()
	}
}
