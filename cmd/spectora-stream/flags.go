package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
)

// natsFlags say where NATS is and how the streams are provisioned.
type natsFlags struct {
	URL            string        `name:"nats-url" env:"NATS_URL" help:"NATS server or cluster URLs, comma-separated. Unset: run an embedded JetStream server (${env})."`
	StoreDir       string        `name:"nats-store-dir" env:"NATS_STORE_DIR" default:"./data/nats" help:"Embedded server's JetStream store directory (${env})."`
	Listen         string        `name:"nats-listen" env:"NATS_LISTEN" default:"127.0.0.1:4222" help:"host:port where the embedded server also accepts NATS clients, or 'off' (${env})."`
	Creds          string        `name:"nats-creds" env:"NATS_CREDS" help:"NATS credentials file (${env})." type:"path"`
	User           string        `name:"nats-user" env:"NATS_USER" help:"NATS user (${env})."`
	Password       string        `name:"nats-password" env:"NATS_PASSWORD" help:"NATS password (${env})."`
	Token          string        `name:"nats-token" env:"NATS_TOKEN" help:"NATS token (${env})."`
	TLSCA          string        `name:"nats-tls-ca" env:"NATS_TLS_CA" help:"CA bundle to trust for NATS TLS (${env})." type:"path"`
	TLSCert        string        `name:"nats-tls-cert" env:"NATS_TLS_CERT" help:"Client certificate for NATS mutual TLS (${env})." type:"path"`
	TLSKey         string        `name:"nats-tls-key" env:"NATS_TLS_KEY" help:"Client key for NATS mutual TLS (${env})." type:"path"`
	Replicas       int           `name:"stream-replicas" env:"NATS_STREAM_REPLICAS" default:"1" help:"Replicas of the streams: 1 embedded, 3 in a cluster (${env})."`
	MaxAge         time.Duration `name:"stream-max-age" env:"NATS_STREAM_MAX_AGE" default:"168h" help:"How long the raw stream keeps webhooks; 0 keeps them (${env})."`
	MaxBytes       int64         `name:"stream-max-bytes" env:"NATS_STREAM_MAX_BYTES" default:"0" help:"Size cap of the raw stream in bytes; 0 is unlimited (${env})."`
	DupWindow      time.Duration `name:"duplicate-window" env:"NATS_DUPLICATE_WINDOW" default:"24h" help:"Deduplication window for svix-id; must cover Svix's longest retry gap (10h). Costs about 140 bytes of server memory per ID (${env})."`
	MaxPending     int           `name:"publish-max-pending" env:"NATS_PUBLISH_MAX_PENDING" default:"4000" help:"Async publishes awaiting a PubAck before new ones stall (${env})."`
	ConnectTimeout time.Duration `name:"nats-connect-timeout" env:"NATS_CONNECT_TIMEOUT" default:"10s" help:"Timeout of the first connection to NATS_URL (${env})."`
	SetupTimeout   time.Duration `name:"stream-setup-timeout" env:"NATS_SETUP_TIMEOUT" default:"60s" help:"How long start-up waits for JetStream to create the streams, e.g. while a cluster elects a leader (${env})."`
}

func (f natsFlags) config(name string) natsx.Config {
	listen := f.Listen
	if listen == "off" {
		listen = ""
	}
	return natsx.Config{
		URL:            f.URL,
		Name:           name,
		CredsFile:      f.Creds,
		User:           f.User,
		Password:       f.Password,
		Token:          f.Token,
		TLSCA:          f.TLSCA,
		TLSCert:        f.TLSCert,
		TLSKey:         f.TLSKey,
		ConnectTimeout: f.ConnectTimeout,
		Embedded:       natsx.EmbeddedConfig{StoreDir: f.StoreDir, Listen: listen},
	}
}

func (f natsFlags) stream() natsx.StreamConfig {
	return natsx.StreamConfig{Replicas: f.Replicas, MaxAge: f.MaxAge, MaxBytes: f.MaxBytes, Duplicates: f.DupWindow}
}

func (f natsFlags) jetStreamOpts(publishTimeout time.Duration) []jetstream.JetStreamOpt {
	return []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(f.MaxPending),
		// Lost acks must not pile up: fail the future after the publish bound.
		jetstream.WithPublishAsyncTimeout(publishTimeout),
	}
}

// gatewayFlags configure the HTTP gateway.
type gatewayFlags struct {
	HTTPAddr        string        `name:"http-addr" env:"HTTP_ADDR" default:":8080" help:"Address the gateway listens on (${env})."`
	Secret          string        `name:"webhook-secret" env:"SPECTORA_WEBHOOK_SECRET" help:"Svix signing secrets (whsec_…) or public keys (whpk_…), separated by spaces or commas. Required (${env})."`
	Sources         string        `name:"webhook-sources" env:"SPECTORA_WEBHOOK_SOURCES" help:"Named sources at /webhooks/spectora/{name}: 'name=secret secret;name2=secret' (${env})."`
	TypeFields      []string      `name:"type-fields" env:"SPECTORA_TYPE_FIELDS" default:"type,event,event_type" help:"Dotted JSON paths of the event type in the body, tried in order (${env})."`
	IDFields        []string      `name:"id-fields" env:"SPECTORA_ID_FIELDS" default:"id,data.id,record_id" help:"Dotted JSON paths of the record ID in the body, tried in order (${env})."`
	BodyLimit       int           `name:"body-limit" env:"HTTP_BODY_LIMIT" default:"1048576" help:"Largest accepted body in bytes; larger gets 413 (${env})."`
	PublishTimeout  time.Duration `name:"publish-timeout" env:"PUBLISH_TIMEOUT" default:"5s" help:"Longest wait for JetStream's PubAck before answering 503 (${env})."`
	RetryAfter      time.Duration `name:"retry-after" env:"RETRY_AFTER" default:"5s" help:"Retry-After sent with 503 (${env})."`
	RateLimit       float64       `name:"rate-limit" env:"RATE_LIMIT" default:"0" help:"Requests per second allowed; 0 disables the limit (${env})."`
	RateBurst       int           `name:"rate-burst" env:"RATE_BURST" default:"0" help:"Burst above the rate limit; 0 means twice the rate (${env})."`
	ShutdownDelay   time.Duration `name:"shutdown-delay" env:"SHUTDOWN_DELAY" default:"0s" help:"On SIGTERM, report not-ready this long before closing the listener, so load balancers notice (${env})."`
	PprofAddr       string        `name:"pprof-addr" env:"PPROF_ADDR" help:"Serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); unset disables (${env})."`
	ShutdownTimeout time.Duration `name:"shutdown-timeout" env:"SHUTDOWN_TIMEOUT" default:"20s" help:"Bound on finishing in-flight requests at shutdown (${env})."`
}

func (f gatewayFlags) config() (gateway.Config, error) {
	sources, err := gateway.ParseSources(f.Sources)
	if err != nil {
		return gateway.Config{}, err
	}
	return gateway.Config{
		Secrets:        gateway.SplitSecrets(f.Secret),
		Sources:        sources,
		Fields:         gateway.Fields{Type: f.TypeFields, ID: f.IDFields},
		BodyLimit:      f.BodyLimit,
		PublishTimeout: f.PublishTimeout,
		RetryAfter:     f.RetryAfter,
		RateLimit:      f.RateLimit,
		RateBurst:      f.RateBurst,
	}, nil
}

// consumerFlags configure the built-in consumer groups and enrichment.
type consumerFlags struct {
	Groups       string          `name:"groups" env:"CONSUMER_GROUPS" default:"enricher,audit" help:"Built-in groups to run: enricher, audit (${env})."`
	Concurrency  int             `name:"consumer-concurrency" env:"CONSUMER_CONCURRENCY" default:"4" help:"Messages each group handles at once in this process (${env})."`
	MaxDeliver   int             `name:"consumer-max-deliver" env:"CONSUMER_MAX_DELIVER" default:"5" help:"Deliveries before a message is dead-lettered (${env})."`
	Backoff      []time.Duration `name:"consumer-backoff" env:"CONSUMER_BACKOFF" default:"1s,5s,30s,2m" help:"Redelivery delays after the 1st, 2nd, … failure; the last repeats (${env})."`
	AckWait      time.Duration   `name:"consumer-ack-wait" env:"CONSUMER_ACK_WAIT" default:"30s" help:"Time before an unanswered delivery is redelivered (${env})."`
	DrainTimeout time.Duration   `name:"consumer-drain-timeout" env:"CONSUMER_DRAIN_TIMEOUT" default:"20s" help:"Bound on finishing in-flight messages at shutdown; later ones go back to the stream (${env})."`
	AuditLog     string          `name:"audit-log" env:"AUDIT_LOG" default:"./data/audit.jsonl" help:"JSON-lines file the audit group appends to (${env})."`
	DLQMaxAge    time.Duration   `name:"dlq-max-age" env:"DLQ_MAX_AGE" default:"720h" help:"How long dead letters are kept; 0 keeps them until purged (${env})."`
	APIURL       string          `name:"api-url" env:"SPECTORA_API_URL" default:"https://connect.spectora.com" help:"Spectora API base URL (${env})."`
	APIToken     string          `name:"api-token" env:"SPECTORA_API_TOKEN" help:"Spectora API key, sent as a Bearer token. Unset: records are not fetched (${env})."`
	APIPaths     string          `name:"api-paths" env:"SPECTORA_API_PATHS" help:"Record paths per resource overriding the defaults, e.g. 'client=/v2/contacts/{id}' (${env})."`
	APITimeout   time.Duration   `name:"api-timeout" env:"SPECTORA_API_TIMEOUT" default:"10s" help:"Timeout of one API request (${env})."`
	APIRateLimit float64         `name:"api-rate-limit" env:"SPECTORA_API_RATE_LIMIT" default:"5" help:"Most API requests per second from this process; divide the company's quota by the instances (${env})."`
	CacheTTL     time.Duration   `name:"record-cache-ttl" env:"RECORD_CACHE_TTL" default:"1h" help:"How long fetched records stay in the shared KV cache (${env})."`
}

func (f consumerFlags) groups() ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, g := range strings.Split(f.Groups, ",") {
		g = strings.TrimSpace(g)
		if g == "" || seen[g] {
			continue
		}
		if g != consumers.EnricherGroup && g != consumers.AuditGroup {
			return nil, fmt.Errorf("CONSUMER_GROUPS: unknown group %q (built-in: %s, %s)", g, consumers.EnricherGroup, consumers.AuditGroup)
		}
		seen[g] = true
		out = append(out, g)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CONSUMER_GROUPS is empty")
	}
	return out, nil
}

func (f consumerFlags) validate() error {
	if _, err := f.groups(); err != nil {
		return err
	}
	switch {
	case f.Concurrency < 1:
		return fmt.Errorf("CONSUMER_CONCURRENCY %d: want at least 1", f.Concurrency)
	case f.MaxDeliver < 1:
		return fmt.Errorf("CONSUMER_MAX_DELIVER %d: want at least 1", f.MaxDeliver)
	case len(f.Backoff) == 0:
		return fmt.Errorf("CONSUMER_BACKOFF: want at least one delay")
	case f.AckWait < time.Second:
		return fmt.Errorf("CONSUMER_ACK_WAIT %s: want at least 1s", f.AckWait)
	case f.CacheTTL < time.Second:
		return fmt.Errorf("RECORD_CACHE_TTL %s: want at least 1s", f.CacheTTL)
	case f.DLQMaxAge < 0:
		return fmt.Errorf("DLQ_MAX_AGE %s: must not be negative", f.DLQMaxAge)
	}
	for _, d := range f.Backoff {
		if d < 0 {
			return fmt.Errorf("CONSUMER_BACKOFF %s: must not be negative", d)
		}
	}
	if f.APIToken != "" {
		cfg, err := f.apiConfig(consumers.Tracing{})
		if err != nil {
			return err
		}
		if _, err := consumers.NewAPIClient(cfg, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// apiConfig is the Spectora API client's configuration from the flags.
func (f consumerFlags) apiConfig(tracing consumers.Tracing) (consumers.APIConfig, error) {
	paths, err := consumers.ParsePaths(f.APIPaths)
	if err != nil {
		return consumers.APIConfig{}, err
	}
	return consumers.APIConfig{
		BaseURL: f.APIURL, Token: f.APIToken, Paths: paths, Timeout: f.APITimeout, RateLimit: f.APIRateLimit, Tracing: tracing,
	}, nil
}
