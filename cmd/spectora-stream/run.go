package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/audit"
	"github.com/spectora-stream/spectora-stream/internal/embedded"
	"github.com/spectora-stream/spectora-stream/internal/eventindex"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/ops"
	"github.com/spectora-stream/spectora-stream/internal/telemetry/otlp"
	"github.com/spectora-stream/spectora-stream/reconcile"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

// serverFlags are the settings every server command shares.
type serverFlags struct {
	NATS     natsFlags     `embed:""`
	Embedded embeddedFlags `embed:""`
	Streams  streamFlags   `embed:""`
	Ops      opsFlags      `embed:""`
}

type serveCmd struct {
	serverFlags `embed:""`
	Gateway     gatewayFlags  `embed:""`
	Consumers   consumerFlags `embed:""`
	Console     consoleFlags  `embed:""`
}

// Run runs the gateway and the built-in consumer groups in one process.
func (c *serveCmd) Run(ctx context.Context, log *slog.Logger) error {
	return run(ctx, log, process{name: "spectora-stream", serverFlags: c.serverFlags, gateway: &c.Gateway, consumers: &c.Consumers, console: &c.Console})
}

type gatewayCmd struct {
	serverFlags `embed:""`
	Gateway     gatewayFlags `embed:""`
}

// Run runs the gateway alone.
func (c *gatewayCmd) Run(ctx context.Context, log *slog.Logger) error {
	return run(ctx, log, process{name: "spectora-gateway", serverFlags: c.serverFlags, gateway: &c.Gateway})
}

type consumersCmd struct {
	serverFlags `embed:""`
	Consumers   consumerFlags `embed:""`
}

// Run runs the built-in consumer groups alone.
func (c *consumersCmd) Run(ctx context.Context, log *slog.Logger) error {
	return run(ctx, log, process{name: "spectora-consumers", serverFlags: c.serverFlags, consumers: &c.Consumers})
}

// process is what one server command runs: the gateway, the groups or both.
type process struct {
	serverFlags
	name      string
	gateway   *gatewayFlags
	consumers *consumerFlags
	console   *consoleFlags
}

// validate checks every setting before anything starts.
func (p process) validate() (gateway.Config, error) {
	if p.NATS.ConnectTimeout <= 0 {
		return gateway.Config{}, fmt.Errorf("NATS_CONNECT_TIMEOUT %s: want more than 0", p.NATS.ConnectTimeout)
	}
	if err := p.Streams.validate(); err != nil {
		return gateway.Config{}, err
	}
	var gcfg gateway.Config
	if p.gateway != nil {
		var err error
		if gcfg, err = p.gateway.config(); err != nil {
			return gateway.Config{}, err
		}
	}
	if p.consumers != nil {
		if err := p.consumers.validate(); err != nil {
			return gateway.Config{}, err
		}
	}
	if p.console != nil {
		if err := p.console.validate(); err != nil {
			return gateway.Config{}, err
		}
	}
	return gcfg, nil
}

// run wires what the process asks for, serves until ctx ends or a part fails,
// then shuts down in order: not ready; the gateway stops accepting and
// finishes in-flight requests (each waits for its PubAck); the groups stop
// pulling and finish or hand back their messages; listeners close; NATS
// drains; the embedded server stops; spans are flushed.
func run(ctx context.Context, log *slog.Logger, p process) (err error) {
	gcfg, err := p.validate()
	if err != nil {
		return usageError{err}
	}
	tel, err := otlp.Setup(ctx, p.name, buildVersion())
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if serr := tel.Shutdown(sctx); serr != nil {
			log.Warn("flushing spans", "err", serr)
		}
	}()
	if tel.TracerProvider != nil {
		log.Info("tracing enabled", "service", p.name, "note", "OTEL_SERVICE_NAME overrides the service name")
	}

	// NATS: the embedded server, or NATS_URL.
	ncfg := p.NATS.config(p.name)
	if p.NATS.URL == "" {
		emb, err := embedded.Start(embedded.Config{StoreDir: p.Embedded.StoreDir, Listen: p.Embedded.listen(), NoAuth: p.Embedded.Auth == "none"}, log)
		if err != nil {
			return err
		}
		defer func() {
			emb.Shutdown()
			log.Info("embedded JetStream server stopped")
		}()
		ncfg.InProcess, ncfg.NkeyFile = emb.InProcess(), emb.SeedFile(embedded.AdminUser)
		logEmbedded(log, p.Embedded, emb)
	}
	conn, err := natsx.Open(ctx, ncfg, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	var jsOpts []jetstream.JetStreamOpt
	if p.gateway != nil {
		jsOpts = p.gateway.jetStreamOpts()
	}
	js, err := jetstream.New(conn.NC, jsOpts...)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	// Streams, then readiness and the ops listener.
	names, err := provision(ctx, js, p, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ready := ops.NewReadiness(natsx.NewHealth(conn, js, names...).Ready, time.Second)
	opsSrv, err := ops.Listen("METRICS_ADDR", p.Ops.MetricsAddr, ops.Handler(ops.Options{Gatherer: reg, Readiness: ready}), log)
	if err != nil {
		return err
	}
	defer shutdownListener(log, "METRICS_ADDR", opsSrv)
	if p.Ops.PprofAddr != "" {
		pprofSrv, err := ops.Listen("PPROF_ADDR", p.Ops.PprofAddr, ops.Handler(ops.Options{Gatherer: reg, Readiness: ready, Pprof: true}), log)
		if err != nil {
			return err
		}
		defer shutdownListener(log, "PPROF_ADDR", pprofSrv)
	}

	// The parts, each reporting a failure on failed.
	failed := make(chan error, 8)
	var gw *runningGateway
	if p.gateway != nil {
		gcfg.Logger, gcfg.TracerProvider, gcfg.Propagator = log, tel.TracerProvider, tel.Propagator
		gcfg.MaxPayload = conn.NC.MaxPayload() // a body that can't fit is refused at start-up
		if gcfg.Metrics, err = gateway.NewMetrics(reg); err != nil {
			return err
		}
		if gw, err = startGateway(gcfg, js, conn, *p.gateway, failed, log); err != nil {
			return err
		}
	}
	var groups *runningGroups
	if p.consumers != nil {
		limits, _ := p.Streams.limits()
		groups, err = startGroups(ctx, js, reg, tel, *p.consumers, limits, failed, log)
		if err != nil {
			if gw != nil {
				gw.stop(js, ready, log)
			}
			return err
		}
	}
	if p.console != nil {
		srv, err := startConsole(ctx, *p.console, js, reg, log)
		if err != nil {
			if gw != nil {
				gw.stop(js, ready, log)
			}
			if groups != nil {
				groups.stop(log)
			}
			return err
		}
		if srv != nil {
			defer shutdownListener(log, "ADMIN_ADDR", srv)
		}
	}

	select {
	case err = <-failed:
		log.Error("shutting down: a part failed", "err", err)
	case <-ctx.Done():
		log.Info("shutting down")
	}
	ready.SetDraining()
	if gw != nil {
		gw.stop(js, ready, log)
	}
	if groups != nil {
		groups.stop(log)
	}
	return err
}

// logEmbedded says where the embedded server is and how other processes
// connect to it.
func logEmbedded(log *slog.Logger, f embeddedFlags, emb *embedded.Server) {
	url := emb.ClientURL()
	switch {
	case url == "":
		log.Info("embedded JetStream server started, in-process only (NATS_LISTEN off)", "store_dir", f.StoreDir)
	case emb.SeedFile(embedded.AdminUser) == "":
		log.Warn("embedded JetStream server started WITHOUT credentials (NATS_EMBEDDED_AUTH=none): any local process can publish events and delete streams",
			"store_dir", f.StoreDir, "client_url", url)
	default:
		log.Info("embedded JetStream server started; clients need a seed file",
			"store_dir", f.StoreDir, "client_url", url,
			"services", emb.SeedFile(embedded.ReaderUser)+" (consume and ack SPECTORA, SPECTORA_ENRICHED)",
			"operators", emb.SeedFile(embedded.AdminUser)+" (everything)",
			"nats_cli", "nats --server "+url+" --nkey "+emb.SeedFile(embedded.AdminUser)+" stream ls")
	}
}

// provision creates or updates the streams the process needs and returns
// their names. Limits no setting names are kept as found (and reported).
func provision(ctx context.Context, js jetstream.JetStream, p process, log *slog.Logger) ([]string, error) {
	limits, explicit := p.Streams.limits()
	type want struct {
		cfg      jetstream.StreamConfig
		explicit natsx.Explicit
	}
	wants := []want{{stream.RawConfig(limits), explicit}}
	if p.consumers != nil {
		dlqAge, dlqSet := p.consumers.dlqMaxAge()
		wants = append(wants, want{stream.EnrichedConfig(limits), explicit},
			want{stream.DLQConfig(limits.Replicas, dlqAge), natsx.Explicit{Replicas: explicit.Replicas, MaxAge: dlqSet}})
	}
	ctx, cancel := context.WithTimeout(ctx, p.Streams.SetupTimeout)
	defer cancel()
	var names []string
	for _, w := range wants {
		if _, _, err := natsx.Provision(ctx, js, w.cfg, w.explicit, log); err != nil {
			return nil, err
		}
		names = append(names, w.cfg.Name)
	}
	return names, nil
}

func shutdownListener(log *slog.Logger, setting string, s *ops.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		log.Warn("closing listener", "setting", setting, "err", err)
	}
}

// runningGateway is a serving gateway.
type runningGateway struct {
	gw     *gateway.Gateway
	served chan error
	flags  gatewayFlags
}

func startGateway(cfg gateway.Config, js jetstream.JetStream, conn *natsx.Conn, gf gatewayFlags, failed chan<- error, log *slog.Logger) (*runningGateway, error) {
	gw, err := gateway.New(cfg, js, conn)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", gf.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %q: %w", gf.HTTPAddr, err)
	}
	r := &runningGateway{gw: gw, served: make(chan error, 1), flags: gf}
	go func() {
		err := gw.Serve(ln)
		r.served <- err
		if err != nil && !errors.Is(err, net.ErrClosed) {
			failed <- fmt.Errorf("HTTP server: %w", err)
		}
	}()
	log.Info("gateway listening", "addr", ln.Addr().String(), "webhook", "POST /webhooks/spectora", "stream", stream.Raw)
	return r, nil
}

// stop: not ready, wait SHUTDOWN_DELAY, stop accepting, finish in-flight
// requests (each waits for its PubAck), then make sure no publish is pending.
func (r *runningGateway) stop(js jetstream.JetStream, ready *ops.Readiness, log *slog.Logger) {
	ready.SetDraining()
	log.Info("gateway draining", "delay", r.flags.ShutdownDelay.String(), "timeout", r.flags.ShutdownTimeout.String())
	time.Sleep(r.flags.ShutdownDelay)
	ctx, cancel := context.WithTimeout(context.Background(), r.flags.ShutdownTimeout)
	defer cancel()
	if err := r.gw.Shutdown(ctx); err != nil {
		log.Warn("in-flight requests did not finish in time", "err", err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		log.Warn("publishes still awaiting a PubAck at shutdown", "pending", js.PublishAsyncPending())
	}
	if err := <-r.served; err != nil && !errors.Is(err, net.ErrClosed) {
		log.Warn("HTTP server", "err", err)
	}
	log.Info("gateway stopped")
}

// runningGroups are the built-in groups of this process.
type runningGroups struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	audit  *audit.Log
}

func startGroups(ctx context.Context, js jetstream.JetStream, reg prometheus.Registerer, tel *otlp.Telemetry,
	cf consumerFlags, limits stream.Limits, failed chan<- error, log *slog.Logger) (*runningGroups, error) {
	replicas := limits.Replicas
	names, err := cf.groups()
	if err != nil {
		return nil, err
	}
	metrics, err := consumers.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	clients, err := apiClients(cf.apiFlags, reg, tel, log)
	if err != nil {
		return nil, err
	}
	var rc *reconcile.Reconciler
	if cf.Interval > 0 {
		if rc, err = newReconciler(ctx, js, reg, tel, cf.Reconcile, replicas, clients, true, log); err != nil {
			return nil, err
		}
	}
	rg := &runningGroups{}
	var groups []*consumers.Group
	for _, name := range names {
		cfg := consumers.Config{
			Name: name, Concurrency: cf.Concurrency, MaxDeliver: cf.MaxDeliver, Backoff: cf.Backoff, AckWait: cf.AckWait,
			DrainTimeout: cf.DrainTimeout, Logger: log, Metrics: metrics, TracerProvider: tel.TracerProvider, Propagator: tel.Propagator,
		}
		switch name {
		case enrich.GroupName:
			enr, err := newEnricher(ctx, js, reg, tel, cf, replicas, clients, log)
			if err != nil {
				rg.closeAudit()
				return nil, err
			}
			cfg.Handler = enr.Handler(js)
		case audit.GroupName:
			if rg.audit, err = audit.Open(audit.InstancePath(cf.AuditLog)); err != nil {
				return nil, fmt.Errorf("AUDIT_LOG: %w", err)
			}
			cfg.Stream = stream.Enriched
			cfg.Handler = rg.audit.Handler()
		case eventindex.GroupName:
			kv, err := js.CreateOrUpdateKeyValue(ctx, eventindex.BucketConfig(limits.MaxAge, replicas))
			if err != nil {
				rg.closeAudit()
				return nil, fmt.Errorf("index bucket %s: %w", stream.IndexBucket, err)
			}
			cfg.Handler = eventindex.Handler(kv)
		}
		g, err := consumers.NewGroup(cfg, js)
		if err != nil {
			rg.closeAudit()
			return nil, err
		}
		groups = append(groups, g)
	}
	// The groups run until stop, not until ctx: the gateway stops first.
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rg.cancel = cancel
	for _, g := range groups {
		rg.wg.Go(func() {
			if err := g.Run(gctx); err != nil {
				failed <- fmt.Errorf("consumer group %s: %w", g.Name(), err)
			}
		})
	}
	if rc != nil {
		log.Info("reconciler running", "interval", cf.Interval.String(), "settle", cf.Reconcile.Settle.String())
		rg.wg.Go(func() { rc.Loop(gctx, cf.Interval) })
	}
	return rg, nil
}

func newEnricher(ctx context.Context, js jetstream.JetStream, reg prometheus.Registerer, tel *otlp.Telemetry,
	cf consumerFlags, replicas int, clients enrich.Clients, log *slog.Logger) (*enrich.Enricher, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, enrich.BucketConfig(cf.CacheTTL, replicas))
	if err != nil {
		return nil, fmt.Errorf("record cache bucket %s: %w", stream.RecordBucket, err)
	}
	metrics, err := enrich.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	ecfg := enrich.Config{Logger: log, Metrics: metrics, TracerProvider: tel.TracerProvider, Propagator: tel.Propagator,
		MemoryBytes: cf.CacheMemory, MemoryTTL: cf.CacheTTL}
	if clients == nil {
		log.Warn("SPECTORA_API_TOKEN is unset: the enricher republishes events without records (record_status not_fetched). " +
			"Set it, or run `spectora-stream sim` and point SPECTORA_API_URL at it.")
		return enrich.New(ecfg, kv, nil), nil
	}
	if ecfg.Versions, err = openVersions(ctx, js, cf.Reconcile, replicas, true); err != nil {
		return nil, err
	}
	rules, _ := cf.Reconcile.rules() // validated
	ecfg.TrackTypes = reconcile.Types(rules)
	return enrich.New(ecfg, kv, clients), nil
}

// openVersions opens the bucket of seen versions (see bucket for update).
func openVersions(ctx context.Context, js jetstream.JetStream, rf reconcileFlags, replicas int, update bool) (*enrich.Versions, error) {
	kv, err := bucket(ctx, js, enrich.VersionBucketConfig(rf.VersionsTTL, replicas), update)
	if err != nil {
		return nil, err
	}
	return enrich.NewVersions(kv, rf.VersionField), nil
}

// bucket opens a key-value bucket. The servers own its configuration
// (update: they create or update it as configured); an operator command
// (update false) uses it as it is and creates it only when it is missing,
// so a run from a laptop never rewrites production's replicas or TTL.
func bucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, update bool) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	var err error
	if update {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
	} else if kv, err = js.KeyValue(ctx, cfg.Bucket); errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// apiClients builds one Spectora API client per company, shared by the
// enricher and the reconciler (and so their rate limit): with
// SPECTORA_API_SOURCES each named source gets its own and
// SPECTORA_API_TOKEN serves the default source; without it,
// SPECTORA_API_TOKEN serves every source (key ""). nil: no key configured.
func apiClients(af apiFlags, reg prometheus.Registerer, tel *otlp.Telemetry, log *slog.Logger) (enrich.Clients, error) {
	sources, err := af.apiSources()
	if err != nil {
		return nil, err
	}
	if af.APIToken == "" && len(sources) == 0 {
		return nil, nil
	}
	acfg, err := af.apiConfig()
	if err != nil {
		return nil, apiSetting(err)
	}
	if acfg.Metrics, err = spectora.NewMetrics(reg); err != nil {
		return nil, err
	}
	acfg.Logger, acfg.TracerProvider, acfg.Propagator = log, tel.TracerProvider, tel.Propagator
	clients := enrich.Clients{}
	if af.APIToken != "" {
		api, err := spectora.NewClient(acfg)
		if err != nil {
			return nil, apiSetting(err)
		}
		if len(sources) == 0 {
			// One company: its key serves every source.
			clients[""] = api
		} else {
			// Several companies: never fetch one's records with another's key.
			clients[gateway.DefaultSource] = api
		}
	}
	for _, src := range sources {
		c := acfg
		c.Token, c.BaseURL = src.token, src.baseURL
		c.Logger = log.With("source", src.name)
		api, err := spectora.NewClient(c)
		if err != nil {
			return nil, fmt.Errorf("SPECTORA_API_SOURCES: source %q: %w", src.name, err)
		}
		clients[src.name] = api
	}
	if len(sources) > 0 {
		log.Info("Spectora API keys per source; events of any other source are not fetched", "sources", slices.Sorted(maps.Keys(clients)))
	}
	return clients, nil
}

// newReconciler builds the reconciler over the API clients: each source's
// client lists its records; the key that serves every source reconciles the
// default source.
func newReconciler(ctx context.Context, js jetstream.JetStream, reg prometheus.Registerer, tel *otlp.Telemetry,
	rf reconcileFlags, replicas int, clients enrich.Clients, server bool, log *slog.Logger) (*reconcile.Reconciler, error) {
	versions, err := openVersions(ctx, js, rf, replicas, server)
	if err != nil {
		return nil, err
	}
	cps, err := bucket(ctx, js, reconcile.CheckpointBucketConfig(replicas), server)
	if err != nil {
		return nil, err
	}
	var metrics *reconcile.Metrics
	if reg != nil {
		if metrics, err = reconcile.NewMetrics(reg); err != nil {
			return nil, err
		}
	}
	rules, err := rf.rules()
	if err != nil {
		return nil, err
	}
	sources := map[string]reconcile.Lister{}
	for name, c := range clients {
		if name == "" {
			name = gateway.DefaultSource
		}
		sources[name] = c
	}
	return reconcile.New(reconcile.Config{Sources: sources, Versions: versions, Checkpoints: cps, Publisher: js,
		Settle: rf.Settle, Lookback: rf.Lookback, Rules: rules,
		Logger: log, Metrics: metrics, TracerProvider: tel.TracerProvider, Propagator: tel.Propagator})
}

// stop ends the groups' runs (each drains within CONSUMER_DRAIN_TIMEOUT) and
// closes the audit log once its group has stopped.
func (rg *runningGroups) stop(log *slog.Logger) {
	rg.cancel()
	rg.wg.Wait()
	rg.closeAudit()
	log.Info("consumer groups stopped")
}

func (rg *runningGroups) closeAudit() {
	if rg.audit != nil {
		_ = rg.audit.Close()
	}
}
