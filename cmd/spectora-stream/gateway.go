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

	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
)

type gatewayCmd struct {
	NATS    natsFlags    `embed:""`
	Gateway gatewayFlags `embed:""`
}

func (c *gatewayCmd) Run(ctx context.Context, log *slog.Logger) error {
	return runGateway(ctx, log, c.NATS, c.Gateway, "spectora-stream-gateway")
}

type serveCmd struct {
	NATS    natsFlags    `embed:""`
	Gateway gatewayFlags `embed:""`
}

func (c *serveCmd) Run(ctx context.Context, log *slog.Logger) error {
	return runGateway(ctx, log, c.NATS, c.Gateway, "spectora-stream")
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// runGateway wires NATS, the raw stream and the gateway, serves until ctx ends,
// then shuts down in order: not ready, stop accepting, finish in-flight
// requests, drain NATS, stop the embedded server.
func runGateway(ctx context.Context, log *slog.Logger, nf natsFlags, gf gatewayFlags, connName string) error {
	gcfg, err := gf.config()
	if err != nil {
		return err
	}
	if err := gcfg.Validate(); err != nil {
		return err
	}
	scfg := nf.stream()
	if err := scfg.Validate(); err != nil {
		return err
	}
	conn, err := natsx.Open(ctx, nf.config(connName), log)
	if err != nil {
		return err
	}
	defer conn.Close()
	js, err := jetstream.New(conn.NC, nf.jetStreamOpts(gf.PublishTimeout)...)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, nf.SetupTimeout)
	_, err = natsx.EnsureStream(setupCtx, js, natsx.RawStreamConfig(scfg), log)
	cancel()
	if err != nil {
		return err
	}
	gw, err := gateway.New(gcfg, js, natsx.NewHealth(conn, js, natsx.RawStream), newRegistry(), log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", gf.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR %q: %w", gf.HTTPAddr, err)
	}
	if gf.PprofAddr != "" {
		if err := servePprof(gf.PprofAddr, log); err != nil {
			return err
		}
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	log.Info("gateway listening", "addr", ln.Addr().String(), "webhook", "POST /webhooks/spectora",
		"embedded_nats", conn.Embedded(), "nats_client_url", conn.EmbeddedURL(), "stream", natsx.RawStream)

	select {
	case err := <-served:
		return fmt.Errorf("HTTP server stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: not ready, finishing in-flight requests", "delay", gf.ShutdownDelay, "timeout", gf.ShutdownTimeout)
	gw.SetDraining()
	time.Sleep(gf.ShutdownDelay)
	sctx, cancel := context.WithTimeout(context.Background(), gf.ShutdownTimeout)
	defer cancel()
	if err := gw.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests did not finish in time", "err", err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-sctx.Done():
		log.Warn("publishes still awaiting a PubAck at shutdown", "pending", js.PublishAsyncPending())
	}
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		log.Warn("HTTP server", "err", err)
	}
	log.Info("gateway stopped")
	return nil
}
