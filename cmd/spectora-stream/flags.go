package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/audit"
	"github.com/spectora-stream/spectora-stream/internal/eventindex"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/reconcile"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Every flag is named after its environment variable: NATS_URL is --nats-url.

// natsFlags say how a server command reaches NATS.
type natsFlags struct {
	URL      string `name:"nats-url" env:"NATS_URL" placeholder:"URLS" help:"NATS server or cluster URLs, comma-separated. Unset: run an embedded JetStream server (${env})."`
	natsAuth `embed:""`
}

func (f natsFlags) config(name string) natsx.Config { return f.natsAuth.config(f.URL, name) }

// natsAuth are a client's credentials and connection settings.
type natsAuth struct {
	Creds          string        `name:"nats-creds" env:"NATS_CREDS" type:"path" placeholder:"FILE" help:"NATS credentials file (${env})."`
	User           string        `name:"nats-user" env:"NATS_USER" placeholder:"USER" help:"NATS user (${env})."`
	Password       string        `name:"nats-password" env:"NATS_PASSWORD" placeholder:"PASSWORD" help:"NATS password (${env})."`
	Token          string        `name:"nats-token" env:"NATS_TOKEN" placeholder:"TOKEN" help:"NATS token (${env})."`
	NKey           string        `name:"nats-nkey" env:"NATS_NKEY" type:"path" placeholder:"FILE" help:"NATS NKey seed file (${env})."`
	TLSCA          string        `name:"nats-tls-ca" env:"NATS_TLS_CA" type:"path" placeholder:"FILE" help:"CA bundle to trust for NATS TLS (${env})."`
	TLSCert        string        `name:"nats-tls-cert" env:"NATS_TLS_CERT" type:"path" placeholder:"FILE" help:"Client certificate for NATS mutual TLS (${env})."`
	TLSKey         string        `name:"nats-tls-key" env:"NATS_TLS_KEY" type:"path" placeholder:"FILE" help:"Client key for NATS mutual TLS (${env})."`
	ConnectTimeout time.Duration `name:"nats-connect-timeout" env:"NATS_CONNECT_TIMEOUT" default:"10s" help:"Timeout of the first connection; more than 0 (${env})."`
}

func (f natsAuth) config(url, name string) natsx.Config {
	return natsx.Config{
		URL: url, Name: name, CredsFile: f.Creds, NkeyFile: f.NKey, User: f.User, Password: f.Password, Token: f.Token,
		TLSCA: f.TLSCA, TLSCert: f.TLSCert, TLSKey: f.TLSKey, ConnectTimeout: f.ConnectTimeout,
	}
}

// embeddedFlags configure the embedded JetStream server of the server commands.
type embeddedFlags struct {
	StoreDir string `name:"nats-store-dir" env:"NATS_STORE_DIR" default:"./data/nats" help:"With NATS_URL unset: the embedded server's JetStream store (${env})."`
	Listen   string `name:"nats-listen" env:"NATS_LISTEN" default:"127.0.0.1:4222" help:"With NATS_URL unset: where the embedded server also accepts NATS clients, or 'off' (${env})."`
	Auth     string `name:"nats-embedded-auth" env:"NATS_EMBEDDED_AUTH" default:"nkeys" enum:"nkeys,none" help:"With NATS_URL unset: 'nkeys' makes clients present a seed file from NATS_STORE_DIR/users (admin.nk, reader.nk, made at first start); 'none' lets any local process in (${env})."`
}

func (f embeddedFlags) listen() string {
	if f.Listen == "off" {
		return ""
	}
	return f.Listen
}

// streamFlags provision the streams. A limit left unset takes its default
// when a stream is created and is otherwise kept as the stream has it, so a
// limit an operator changed with a NATS client is reported, not reverted.
type streamFlags struct {
	Replicas     *int           `name:"nats-stream-replicas" env:"NATS_STREAM_REPLICAS" placeholder:"N" help:"Replicas of every stream, 1 to 5: 1 on one server, 3 in a cluster. Default 1; unset keeps an existing stream's (${env})."`
	MaxAge       *time.Duration `name:"nats-stream-max-age" env:"NATS_STREAM_MAX_AGE" placeholder:"DURATION" help:"How long the raw and enriched streams keep events; 0 keeps them until NATS_STREAM_MAX_BYTES. Default 168h; unset keeps an existing stream's (${env})."`
	MaxBytes     *int64         `name:"nats-stream-max-bytes" env:"NATS_STREAM_MAX_BYTES" placeholder:"BYTES" help:"Size cap of the raw and enriched streams in bytes; a full stream refuses new events (503) rather than evict stored ones; 0 is no cap. Default 0; unset keeps an existing stream's (${env})."`
	Duplicates   *time.Duration `name:"nats-duplicate-window" env:"NATS_DUPLICATE_WINDOW" placeholder:"DURATION" help:"Deduplication window for svix-id; must cover Svix's longest retry gap (10h) and not exceed NATS_STREAM_MAX_AGE; about 140 bytes of server memory per ID. Default 24h; unset keeps an existing stream's (${env})."`
	SetupTimeout time.Duration  `name:"nats-setup-timeout" env:"NATS_SETUP_TIMEOUT" default:"60s" help:"How long start-up waits for JetStream to create the streams, e.g. while a cluster elects a leader (${env})."`
}

// limits are the streams' limits, defaults filled in, and which were set.
func (f streamFlags) limits() (stream.Limits, natsx.Explicit) {
	l := stream.DefaultLimits()
	var e natsx.Explicit
	if f.Replicas != nil {
		l.Replicas, e.Replicas = *f.Replicas, true
	}
	if f.MaxAge != nil {
		l.MaxAge, e.MaxAge = *f.MaxAge, true
	}
	if f.MaxBytes != nil {
		l.MaxBytes, e.MaxBytes = *f.MaxBytes, true
	}
	if f.Duplicates != nil {
		l.Duplicates, e.Duplicates = *f.Duplicates, true
	}
	return l, e
}

func (f streamFlags) validate() error {
	l, _ := f.limits()
	switch {
	case l.Replicas < 1 || l.Replicas > 5:
		return fmt.Errorf("NATS_STREAM_REPLICAS %d: want 1 to 5", l.Replicas)
	case l.MaxAge < 0:
		return fmt.Errorf("NATS_STREAM_MAX_AGE %s: must not be negative (0 keeps events until NATS_STREAM_MAX_BYTES)", l.MaxAge)
	case l.MaxBytes < 0:
		return fmt.Errorf("NATS_STREAM_MAX_BYTES %d: must not be negative (0 is no cap)", l.MaxBytes)
	case l.Duplicates < time.Second:
		return fmt.Errorf("NATS_DUPLICATE_WINDOW %s: want at least 1s (Svix retries need hours)", l.Duplicates)
	case l.MaxAge > 0 && l.Duplicates > l.MaxAge:
		return fmt.Errorf("NATS_DUPLICATE_WINDOW %s is longer than NATS_STREAM_MAX_AGE %s", l.Duplicates, l.MaxAge)
	case f.SetupTimeout <= 0:
		return fmt.Errorf("NATS_SETUP_TIMEOUT %s: must be positive", f.SetupTimeout)
	}
	return nil
}

// opsFlags configure the ops listener.
type opsFlags struct {
	MetricsAddr string `name:"metrics-addr" env:"METRICS_ADDR" default:"127.0.0.1:9090" help:"Address serving /metrics, /healthz and /readyz, apart from the webhook port (${env})."`
	PprofAddr   string `name:"pprof-addr" env:"PPROF_ADDR" placeholder:"HOST:PORT" help:"Serve Go's pprof profiles on this address (keep it private, e.g. 127.0.0.1:6060); unset: off (${env})."`
}

// gatewayFlags configure the HTTP gateway.
type gatewayFlags struct {
	HTTPAddr        string        `name:"http-addr" env:"HTTP_ADDR" default:":8080" help:"Address the webhook endpoint listens on (${env})."`
	Secret          string        `name:"spectora-webhook-secret" env:"SPECTORA_WEBHOOK_SECRET" placeholder:"SECRETS" help:"Svix signing secrets (whsec_…) or public keys (whpk_…), separated by spaces or commas. Required (${env})."`
	Sources         string        `name:"spectora-webhook-sources" env:"SPECTORA_WEBHOOK_SOURCES" placeholder:"SOURCES" help:"Named sources at /webhooks/spectora/{name}: 'name=secret secret;name2=secret' (${env})."`
	TypeFields      string        `name:"spectora-type-fields" env:"SPECTORA_TYPE_FIELDS" default:"type,event,event_type" help:"Dotted JSON paths of the event type in the body, tried in order (${env})."`
	IDFields        string        `name:"spectora-id-fields" env:"SPECTORA_ID_FIELDS" default:"id,data.id,record_id" help:"Dotted JSON paths of the record ID in the body, tried in order (${env})."`
	BodyLimit       int           `name:"http-body-limit" env:"HTTP_BODY_LIMIT" default:"1000000" help:"Largest accepted body in bytes, at least 1024; larger gets 413. With the envelope it must fit the NATS server's max_payload (${env})."`
	PublishTimeout  time.Duration `name:"publish-timeout" env:"PUBLISH_TIMEOUT" default:"5s" help:"Longest wait for JetStream's PubAck before answering 503; more than 0 and under 15s (${env})."`
	RetryAfter      time.Duration `name:"retry-after" env:"RETRY_AFTER" default:"5s" help:"Retry-After sent with 503; at least 1s (${env})."`
	MaxInflight     int64         `name:"http-max-inflight-bytes" env:"HTTP_MAX_INFLIGHT_BYTES" default:"33554432" help:"Memory all webhook bodies being read or verified may use together; past it, 503. At least HTTP_BODY_LIMIT (${env})."`
	RateLimit       float64       `name:"rate-limit" env:"RATE_LIMIT" default:"0" help:"Verified webhooks per second allowed per source; only verified webhooks count; 0 is no limit (${env})."`
	RateBurst       int           `name:"rate-burst" env:"RATE_BURST" default:"0" help:"Burst above RATE_LIMIT; 0 means twice the rate (${env})."`
	RefusedLimit    float64       `name:"refused-rate-limit" env:"REFUSED_RATE_LIMIT" default:"10" help:"Refused requests (401, 404, 413…) per second allowed per client address before it gets 429 without further work; 0 is no limit (${env})."`
	RefusedBurst    int           `name:"refused-rate-burst" env:"REFUSED_RATE_BURST" default:"50" help:"Burst above REFUSED_RATE_LIMIT; 0 means 50 (${env})."`
	TrustedProxies  string        `name:"trusted-proxies" env:"TRUSTED_PROXIES" placeholder:"CIDRS" help:"Load balancers (IPs or CIDRs, comma-separated) whose X-Forwarded-For names the client address (${env})."`
	MaxPending      int           `name:"nats-publish-max-pending" env:"NATS_PUBLISH_MAX_PENDING" default:"4000" help:"Publishes awaiting a PubAck before new ones stall (then 503); at least 1 (${env})."`
	ShutdownDelay   time.Duration `name:"shutdown-delay" env:"SHUTDOWN_DELAY" default:"0s" help:"On SIGTERM, report not-ready this long before closing the listener, so load balancers notice; 0 closes at once (${env})."`
	ShutdownTimeout time.Duration `name:"shutdown-timeout" env:"SHUTDOWN_TIMEOUT" default:"20s" help:"Bound on finishing in-flight requests at shutdown; more than 0 (${env})."`
}

func (f gatewayFlags) config() (gateway.Config, error) {
	sources, err := gateway.ParseSources(f.Sources)
	if err != nil {
		return gateway.Config{}, err
	}
	// The library takes 0 for "the default"; here every value is explicit
	// (the defaults are the flags'), so 0 where it means nothing is refused.
	switch {
	case f.MaxPending < 1:
		return gateway.Config{}, fmt.Errorf("NATS_PUBLISH_MAX_PENDING %d: want at least 1", f.MaxPending)
	case f.BodyLimit < 1024:
		return gateway.Config{}, fmt.Errorf("HTTP_BODY_LIMIT %d: want at least 1024 (bytes)", f.BodyLimit)
	case f.MaxInflight < int64(f.BodyLimit):
		return gateway.Config{}, fmt.Errorf("HTTP_MAX_INFLIGHT_BYTES %d: want at least HTTP_BODY_LIMIT (%d)", f.MaxInflight, f.BodyLimit)
	case f.PublishTimeout <= 0 || f.PublishTimeout >= 15*time.Second:
		return gateway.Config{}, fmt.Errorf("PUBLISH_TIMEOUT %s: want more than 0 and under Svix's 15s", f.PublishTimeout)
	case f.RetryAfter < time.Second:
		return gateway.Config{}, fmt.Errorf("RETRY_AFTER %s: want at least 1s", f.RetryAfter)
	case f.ShutdownDelay < 0:
		return gateway.Config{}, fmt.Errorf("SHUTDOWN_DELAY %s: must not be negative", f.ShutdownDelay)
	case f.ShutdownTimeout <= 0:
		return gateway.Config{}, fmt.Errorf("SHUTDOWN_TIMEOUT %s: want more than 0", f.ShutdownTimeout)
	}
	cfg := gateway.Config{
		Secrets:          gateway.SplitSecrets(f.Secret),
		Sources:          sources,
		Fields:           gateway.Fields{Type: splitList(f.TypeFields), ID: splitList(f.IDFields)},
		BodyLimit:        f.BodyLimit,
		PublishTimeout:   f.PublishTimeout,
		RetryAfter:       f.RetryAfter,
		RateLimit:        f.RateLimit,
		RateBurst:        f.RateBurst,
		MaxInflightBytes: f.MaxInflight,
		RefusedRateLimit: f.RefusedLimit,
		RefusedRateBurst: f.RefusedBurst,
		TrustedProxies:   splitList(f.TrustedProxies),
	}
	return cfg, cfg.Validate()
}

func (f gatewayFlags) jetStreamOpts() []jetstream.JetStreamOpt {
	return []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(f.MaxPending),
		// Lost acks must not pile up: fail the future after the publish bound.
		jetstream.WithPublishAsyncTimeout(f.PublishTimeout),
	}
}

// consumerFlags configure the built-in consumer groups and enrichment.
type consumerFlags struct {
	Groups       string          `name:"consumer-groups" env:"CONSUMER_GROUPS" default:"enricher,audit" help:"Built-in groups to run, comma-separated: enricher, audit, indexer (${env})."`
	Concurrency  int             `name:"consumer-concurrency" env:"CONSUMER_CONCURRENCY" default:"128" help:"Messages each group handles at once in this process; 1 to 1024 (${env})."`
	MaxDeliver   int             `name:"consumer-max-deliver" env:"CONSUMER_MAX_DELIVER" default:"5" help:"Deliveries before a message is dead-lettered; at least 1 (${env})."`
	Backoff      []time.Duration `name:"consumer-backoff" env:"CONSUMER_BACKOFF" default:"1s,5s,30s,2m" placeholder:"DELAYS" help:"Redelivery delays after the 1st, 2nd, … failure, comma-separated; the last repeats; 0 redelivers at once. Default 1s,5s,30s,2m (${env})."`
	AckWait      time.Duration   `name:"consumer-ack-wait" env:"CONSUMER_ACK_WAIT" default:"30s" help:"Time before an unanswered delivery is redelivered; at least 1s (${env})."`
	DrainTimeout time.Duration   `name:"consumer-drain-timeout" env:"CONSUMER_DRAIN_TIMEOUT" default:"20s" help:"Bound on finishing in-flight messages at shutdown, then they go back to the stream; 0 hands them back at once (${env})."`
	AuditLog     string          `name:"audit-log" env:"AUDIT_LOG" default:"./data/audit.jsonl" help:"JSON-lines file the audit group appends to; one per instance ({hostname} and {pid} expand) (${env})."`
	DLQMaxAge    *time.Duration  `name:"dlq-max-age" env:"DLQ_MAX_AGE" placeholder:"DURATION" help:"How long dead letters are kept; 0 keeps them until purged. Default 720h; unset keeps an existing stream's (${env})."`
	CacheTTL     time.Duration   `name:"record-cache-ttl" env:"RECORD_CACHE_TTL" default:"1h" help:"How long fetched records stay in the shared KV cache; at least 1s (${env})."`
	CacheMemory  int64           `name:"record-cache-memory-bytes" env:"RECORD_CACHE_MEMORY_BYTES" default:"33554432" help:"Bytes of records each process also keeps in memory, in front of the shared KV cache (32 MiB); 0: none (${env})."`
	apiFlags     `embed:""`
	Reconcile    reconcileFlags `embed:""`
	Interval     time.Duration  `name:"reconcile-interval" env:"RECONCILE_INTERVAL" default:"0s" help:"Run the reconciler this often in this process (every instance may: events are stored once); 0: off (${env})."`
}

// apiFlags configure the Spectora API clients, one per company.
type apiFlags struct {
	APIURL       string        `name:"spectora-api-url" env:"SPECTORA_API_URL" default:"https://connect.spectora.com" help:"Spectora API base URL (${env})."`
	APIToken     string        `name:"spectora-api-token" env:"SPECTORA_API_TOKEN" placeholder:"TOKEN" help:"Spectora API key, sent as a Bearer token. Unset: records are not fetched (${env})."`
	APISources   string        `name:"spectora-api-sources" env:"SPECTORA_API_SOURCES" placeholder:"SOURCES" help:"One API key per named source (Spectora company): 'acme=KEY;beta=KEY https://other-base-url'. Set: each source's records are fetched with its own key only, SPECTORA_API_TOKEN serves the default source, and a source without a key is not fetched (${env})."`
	APIPaths     string        `name:"spectora-api-paths" env:"SPECTORA_API_PATHS" placeholder:"PATHS" help:"Record paths per resource overriding the defaults, e.g. 'client=/v2/contacts/{id}' (${env})."`
	ListPaths    string        `name:"spectora-api-list-paths" env:"SPECTORA_API_LIST_PATHS" placeholder:"PATHS" help:"List paths per resource for the reconciler, overriding the defaults (unconfirmed: /v2/inspections, /v2/connections, /v2/contacts), e.g. 'client=' to skip one (${env})."`
	SinceParam   string        `name:"spectora-api-since-param" env:"SPECTORA_API_SINCE_PARAM" default:"filter[updated_since]" help:"List query parameter selecting records changed since a time (unconfirmed) (${env})."`
	APITimeout   time.Duration `name:"spectora-api-timeout" env:"SPECTORA_API_TIMEOUT" default:"10s" help:"Timeout of one API request; more than 0 (${env})."`
	APIRateLimit float64       `name:"spectora-api-rate-limit" env:"SPECTORA_API_RATE_LIMIT" default:"5" help:"Most API requests per second from this process with each company's key, more than 0; divide the company's quota by the instances (${env})."`
}

// reconcileFlags are the reconciler's settings the enricher shares: how a
// version is read, which rule types it records, how long versions live.
type reconcileFlags struct {
	VersionField string        `name:"reconcile-version-field" env:"RECONCILE_VERSION_FIELD" default:"attributes.updated_at" help:"Path of a record's version in its JSON:API resource object (unconfirmed) (${env})."`
	VersionsTTL  time.Duration `name:"record-versions-ttl" env:"RECORD_VERSIONS_TTL" default:"720h" help:"How long the last seen version of a record is kept; reconciling further back republishes seen changes; at least 1h (${env})."`
	Rules        string        `name:"reconcile-rules" env:"RECONCILE_RULES" placeholder:"RULES" help:"Events to derive from record state, e.g. 'inspection.published=attributes.published_at'; guesses, off by default (${env})."`
	Settle       time.Duration `name:"reconcile-settle" env:"RECONCILE_SETTLE" default:"5m" help:"Changes younger than this wait for the next run, so webhooks on their way are not overtaken; more than 0 (${env})."`
	Lookback     time.Duration `name:"reconcile-lookback" env:"RECONCILE_LOOKBACK" default:"24h" help:"How far back a first run reads, before a checkpoint exists; more than 0 (${env})."`
}

func (f reconcileFlags) validate() error {
	switch {
	case f.VersionsTTL < time.Hour:
		return fmt.Errorf("RECORD_VERSIONS_TTL %s: want at least 1h", f.VersionsTTL)
	case f.Settle <= 0:
		return fmt.Errorf("RECONCILE_SETTLE %s: want more than 0", f.Settle)
	case f.Lookback <= 0:
		return fmt.Errorf("RECONCILE_LOOKBACK %s: want more than 0", f.Lookback)
	case strings.TrimSpace(f.VersionField) == "":
		return errors.New("RECONCILE_VERSION_FIELD is empty: want a path such as attributes.updated_at")
	}
	if _, err := f.rules(); err != nil {
		return err
	}
	return nil
}

func (f reconcileFlags) rules() ([]reconcile.Rule, error) {
	rules, err := reconcile.ParseRules(f.Rules)
	if err != nil {
		return nil, fmt.Errorf("RECONCILE_RULES: %w", err)
	}
	return rules, nil
}

func (f consumerFlags) groups() ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, g := range splitList(f.Groups) {
		if seen[g] {
			continue
		}
		if g != enrich.GroupName && g != audit.GroupName && g != eventindex.GroupName {
			return nil, fmt.Errorf("CONSUMER_GROUPS: unknown group %q (built-in: %s, %s, %s)", g, enrich.GroupName, audit.GroupName, eventindex.GroupName)
		}
		seen[g] = true
		out = append(out, g)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CONSUMER_GROUPS is empty (built-in: %s, %s, %s)", enrich.GroupName, audit.GroupName, eventindex.GroupName)
	}
	return out, nil
}

func (f consumerFlags) validate() error {
	if _, err := f.groups(); err != nil {
		return err
	}
	switch {
	case f.Concurrency < 1 || f.Concurrency > 1024:
		return fmt.Errorf("CONSUMER_CONCURRENCY %d: want 1 to 1024", f.Concurrency)
	case f.MaxDeliver < 1:
		return fmt.Errorf("CONSUMER_MAX_DELIVER %d: want at least 1", f.MaxDeliver)
	case len(f.Backoff) == 0:
		return fmt.Errorf("CONSUMER_BACKOFF: want at least one delay")
	case f.AckWait < time.Second:
		return fmt.Errorf("CONSUMER_ACK_WAIT %s: want at least 1s", f.AckWait)
	case f.DrainTimeout < 0:
		return fmt.Errorf("CONSUMER_DRAIN_TIMEOUT %s: must not be negative", f.DrainTimeout)
	case f.CacheTTL < time.Second:
		return fmt.Errorf("RECORD_CACHE_TTL %s: want at least 1s", f.CacheTTL)
	case f.CacheMemory < 0:
		return fmt.Errorf("RECORD_CACHE_MEMORY_BYTES %d: want 0 (none) or more bytes", f.CacheMemory)
	case f.APITimeout <= 0:
		return fmt.Errorf("SPECTORA_API_TIMEOUT %s: want more than 0", f.APITimeout)
	case f.APIRateLimit <= 0:
		return fmt.Errorf("SPECTORA_API_RATE_LIMIT %g: want more than 0 (requests per second)", f.APIRateLimit)
	case f.DLQMaxAge != nil && *f.DLQMaxAge < 0:
		return fmt.Errorf("DLQ_MAX_AGE %s: must not be negative (0 keeps dead letters until purged)", *f.DLQMaxAge)
	case f.Interval < 0:
		return fmt.Errorf("RECONCILE_INTERVAL %s: must not be negative (0: off)", f.Interval)
	case f.Interval > 0 && f.Interval < time.Minute:
		return fmt.Errorf("RECONCILE_INTERVAL %s: want at least 1m (each run lists every changed record)", f.Interval)
	}
	for _, d := range f.Backoff {
		if d < 0 {
			return fmt.Errorf("CONSUMER_BACKOFF %s: must not be negative", d)
		}
	}
	if err := f.Reconcile.validate(); err != nil {
		return err
	}
	if f.Interval > 0 && f.APIToken == "" && f.APISources == "" {
		return errors.New("RECONCILE_INTERVAL is set but no API key is: set SPECTORA_API_TOKEN or SPECTORA_API_SOURCES")
	}
	return f.apiFlags.validate()
}

func (f apiFlags) validate() error {
	if f.APIToken != "" {
		cfg, err := f.apiConfig()
		if err == nil {
			_, err = spectora.NewClient(cfg)
		}
		if err != nil {
			return apiSetting(err)
		}
	}
	_, err := f.apiSources()
	return err
}

// apiSource is one SPECTORA_API_SOURCES entry.
type apiSource struct {
	name, token, baseURL string
}

// apiSources parses SPECTORA_API_SOURCES: "name=token[ base-url]" entries
// separated by ";". Errors name the entry, never the key.
func (f apiFlags) apiSources() ([]apiSource, error) {
	var out []apiSource
	seen := map[string]bool{}
	n := 0
	for entry := range strings.SplitSeq(f.APISources, ";") {
		n++
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		name, rest, ok := strings.Cut(entry, "=")
		name = strings.TrimSpace(name)
		fields := strings.Fields(rest)
		switch {
		case !ok:
			return nil, fmt.Errorf("SPECTORA_API_SOURCES: entry %d: want name=key[ base-url]", n)
		case !gateway.ValidSourceName(name):
			// Not quoted: a pasted key with base64 padding would land here.
			return nil, fmt.Errorf("SPECTORA_API_SOURCES: entry %d: the source name before \"=\" must be lowercase letters, digits, _ or -, at most 63", n)
		case name == gateway.DefaultSource:
			return nil, fmt.Errorf("SPECTORA_API_SOURCES: %q is the default source's: set SPECTORA_API_TOKEN for it", name)
		case seen[name]:
			return nil, fmt.Errorf("SPECTORA_API_SOURCES: source %q appears twice", name)
		case len(fields) == 0:
			return nil, fmt.Errorf("SPECTORA_API_SOURCES: source %q has no API key", name)
		case len(fields) > 2:
			return nil, fmt.Errorf("SPECTORA_API_SOURCES: source %q: want a key and at most one base URL", name)
		}
		seen[name] = true
		src := apiSource{name: name, token: fields[0], baseURL: f.APIURL}
		if len(fields) == 2 {
			src.baseURL = fields[1]
		}
		cfg, err := f.apiConfig()
		if err == nil {
			cfg.Token, cfg.BaseURL = src.token, src.baseURL
			_, err = spectora.NewClient(cfg)
		}
		if err != nil {
			return nil, fmt.Errorf("SPECTORA_API_SOURCES: source %q: %w", name, err)
		}
		out = append(out, src)
	}
	return out, nil
}

// apiConfig is the Spectora API client's configuration from the flags.
func (f apiFlags) apiConfig() (spectora.Config, error) {
	paths, err := spectora.ParsePaths(f.APIPaths)
	if err != nil {
		return spectora.Config{}, err
	}
	listPaths, err := spectora.ParseListPaths(f.ListPaths)
	if err != nil {
		return spectora.Config{}, err
	}
	if strings.TrimSpace(f.SinceParam) == "" {
		return spectora.Config{}, fmt.Errorf("%w: since parameter is empty", spectora.ErrConfig)
	}
	return spectora.Config{BaseURL: f.APIURL, Token: f.APIToken, Paths: paths, ListPaths: listPaths, SinceParam: f.SinceParam,
		Timeout: f.APITimeout, RateLimit: f.APIRateLimit}, nil
}

// apiSetting names the setting behind an API client configuration error.
func apiSetting(err error) error {
	msg := err.Error()
	for _, m := range []struct{ word, setting string }{
		{"base URL", "SPECTORA_API_URL"}, {"token", "SPECTORA_API_TOKEN"}, {"list path", "SPECTORA_API_LIST_PATHS"},
		{"path", "SPECTORA_API_PATHS"}, {"since parameter", "SPECTORA_API_SINCE_PARAM"},
		{"rate limit", "SPECTORA_API_RATE_LIMIT"}, {"timeout", "SPECTORA_API_TIMEOUT"},
	} {
		if strings.Contains(msg, m.word) {
			return fmt.Errorf("%s: %w", m.setting, err)
		}
	}
	return err
}

// splitList splits a comma-separated setting, dropping blanks.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// targetFlags say where send, bench and sim post webhooks and what they sign with.
type targetFlags struct {
	URL    string `name:"spectora-gateway-url" env:"SPECTORA_GATEWAY_URL" default:"http://127.0.0.1:8080/webhooks/spectora" help:"Gateway webhook URL (${env})."`
	Secret string `name:"spectora-webhook-secret" env:"SPECTORA_WEBHOOK_SECRET" placeholder:"SECRETS" help:"Signs with the first whsec_ secret in this list (${env})."`
}

// dlqMaxAge is DLQ_MAX_AGE, or its default, and whether it was set.
func (f consumerFlags) dlqMaxAge() (time.Duration, bool) {
	if f.DLQMaxAge == nil {
		return 30 * 24 * time.Hour, false
	}
	return *f.DLQMaxAge, true
}
