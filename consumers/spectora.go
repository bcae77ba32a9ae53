package consumers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"golang.org/x/time/rate"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// DefaultAPIURL is Spectora's API base URL as third-party integrations use it
// (not confirmed by Spectora's public documentation).
const DefaultAPIURL = "https://connect.spectora.com"

// DefaultPaths maps a subject's resource to its JSON:API record path. Agents
// are "connections" in Spectora's API, clients "contacts"; the contacts path is
// a guess (unconfirmed), override it with SPECTORA_API_PATHS.
func DefaultPaths() map[string]string {
	return map[string]string{
		"inspection": "/v2/inspections/{id}",
		"agent":      "/v2/connections/{id}",
		"client":     "/v2/contacts/{id}",
	}
}

// APIConfig configures the Spectora API client.
type APIConfig struct {
	// BaseURL is SPECTORA_API_URL; default DefaultAPIURL.
	BaseURL string
	// Token is SPECTORA_API_TOKEN, sent as "Authorization: Bearer <token>".
	Token string
	// Paths maps resources to path templates with "{id}" (SPECTORA_API_PATHS).
	Paths map[string]string
	// Timeout bounds one HTTP request; default 10s.
	Timeout time.Duration
	// MaxAttempts bounds tries per fetch (5xx, timeouts, 429); default 4.
	MaxAttempts int
	// RateLimit is the most requests per second this process sends
	// (SPECTORA_API_RATE_LIMIT); default 5. Instances share the company's
	// quota, so divide it by the number of instances.
	RateLimit float64
	// RateBurst is the limiter's burst; default 1.
	RateBurst int
	// MaxRetryAfter is the longest Retry-After waited for in process; a longer
	// one sends the message back to the queue with that delay. Default 10s.
	MaxRetryAfter time.Duration
	// HTTPClient sends the requests; default a client with Timeout whose
	// transport makes a CLIENT span per request (otelhttp).
	HTTPClient *http.Client
	// Tracing traces the default HTTPClient's requests.
	Tracing Tracing
}

// Record is what the API said about one record.
type Record struct {
	Status    spectorav1.RecordStatus
	Body      []byte
	Path      string
	FetchedAt time.Time
}

// APIClient fetches Spectora records with retries, backoff and a rate limit.
type APIClient struct {
	cfg     APIConfig
	base    *url.URL
	limiter *rate.Limiter
	metrics *Metrics
	log     *slog.Logger
}

// NewAPIClient validates cfg. A missing token is an error: callers that run
// without one skip enrichment explicitly.
func NewAPIClient(cfg APIConfig, metrics *Metrics, logger *slog.Logger) (*APIClient, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultAPIURL
	}
	if cfg.Paths == nil {
		cfg.Paths = DefaultPaths()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 5
	}
	if cfg.RateBurst == 0 {
		cfg.RateBurst = 1
	}
	if cfg.MaxRetryAfter == 0 {
		cfg.MaxRetryAfter = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.Timeout, Transport: otelhttp.NewTransport(http.DefaultTransport,
			otelhttp.WithTracerProvider(cfg.Tracing.provider()), otelhttp.WithPropagators(cfg.Tracing.propagator()))}
	}
	base, err := url.Parse(cfg.BaseURL)
	switch {
	case err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "":
		return nil, fmt.Errorf("%w: SPECTORA_API_URL %q: want an http(s) URL", ErrInvalidAPIConfig, cfg.BaseURL)
	case strings.TrimSpace(cfg.Token) == "":
		return nil, fmt.Errorf("%w: SPECTORA_API_TOKEN is empty", ErrInvalidAPIConfig)
	case cfg.RateLimit < 0 || cfg.MaxAttempts < 1 || cfg.Timeout < 0:
		return nil, fmt.Errorf("%w: SPECTORA_API_RATE_LIMIT, attempts and timeout must be positive", ErrInvalidAPIConfig)
	}
	for res, p := range cfg.Paths {
		if !strings.HasPrefix(p, "/") || !strings.Contains(p, "{id}") {
			return nil, fmt.Errorf("%w: SPECTORA_API_PATHS %s=%q: want a path starting with / and containing {id}", ErrInvalidAPIConfig, res, p)
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &APIClient{cfg: cfg, base: base, limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst), metrics: metrics, log: logger.With("component", "spectora-api")}, nil
}

// ParsePaths reads SPECTORA_API_PATHS: "inspection=/v2/inspections/{id},agent=/v2/connections/{id}".
// Entries override DefaultPaths; an empty path removes a resource.
func ParsePaths(s string) (map[string]string, error) {
	paths := DefaultPaths()
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		res, p, ok := strings.Cut(entry, "=")
		if !ok || strings.TrimSpace(res) == "" {
			return nil, fmt.Errorf("%w: SPECTORA_API_PATHS entry %q: want resource=/path/{id}", ErrInvalidAPIConfig, entry)
		}
		if p = strings.TrimSpace(p); p == "" {
			delete(paths, strings.TrimSpace(res))
			continue
		}
		paths[strings.TrimSpace(res)] = p
	}
	return paths, nil
}

// Fetch gets one record. 404 and 410 mean the record is gone (not an error);
// 5xx, timeouts and 429 are retried with jittered exponential backoff (429
// honours Retry-After); a resource without a path is not fetched.
func (c *APIClient) Fetch(ctx context.Context, resource, id string) (Record, error) {
	tmpl, ok := c.cfg.Paths[resource]
	if !ok || id == "" {
		return Record{Status: spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED}, nil
	}
	path := strings.ReplaceAll(tmpl, "{id}", url.PathEscape(id))
	target := c.base.JoinPath(path).String()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	rec, err := backoff.Retry(ctx, func() (Record, error) {
		return c.once(ctx, resource, path, target)
	}, backoff.WithBackOff(b), backoff.WithMaxTries(uint(c.cfg.MaxAttempts)), backoff.WithMaxElapsedTime(0))
	var ra *backoff.RetryAfterError
	if errors.As(err, &ra) {
		// Out of attempts while rate limited: come back after Retry-After.
		return rec, &RetryAfterError{Delay: ra.Duration, Err: fmt.Errorf("%w: %s: rate limited (429)", ErrAPI, path)}
	}
	return rec, err
}

func (c *APIClient) once(ctx context.Context, resource, path, target string) (Record, error) {
	if err := c.limiter.Wait(ctx); err != nil {
		return Record{}, backoff.Permanent(fmt.Errorf("%w: rate limiter: %v", ErrAPI, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return Record{}, backoff.Permanent(fmt.Errorf("%w: %v", ErrAPI, err))
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Accept", "application/vnd.api+json, application/json")
	start := time.Now()
	resp, err := c.cfg.HTTPClient.Do(req)
	c.metrics.apiLatency.WithLabelValues(resource).Observe(time.Since(start).Seconds())
	if err != nil {
		c.metrics.apiCalls.WithLabelValues(resource, "error").Inc()
		if ctx.Err() != nil {
			return Record{}, backoff.Permanent(fmt.Errorf("%w: GET %s: %w", ErrAPI, path, ctx.Err()))
		}
		return Record{}, fmt.Errorf("%w: GET %s: %v", ErrAPI, path, err) // timeouts, resets: retry
	}
	defer func() { _ = resp.Body.Close() }()
	c.metrics.apiCalls.WithLabelValues(resource, strconv.Itoa(resp.StatusCode)).Inc()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRecordBytes+1))
	if err != nil {
		return Record{}, fmt.Errorf("%w: GET %s: read body: %v", ErrAPI, path, err)
	}
	if len(body) > maxRecordBytes {
		// Never store a cut-off document as the record.
		return Record{}, backoff.Permanent(Permanent(fmt.Errorf("GET %s: record larger than %d bytes", path, maxRecordBytes)))
	}
	switch code := resp.StatusCode; {
	// FetchedAt is when the request left: the record reflects at least every
	// change made before then.
	case code == http.StatusOK:
		return Record{Status: spectorav1.RecordStatus_RECORD_STATUS_FOUND, Body: body, Path: path, FetchedAt: start}, nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return Record{Status: spectorav1.RecordStatus_RECORD_STATUS_GONE, Path: path, FetchedAt: start}, nil
	case code == http.StatusTooManyRequests:
		wait := retryAfter(resp.Header.Get("Retry-After"), time.Second)
		if wait > c.cfg.MaxRetryAfter {
			return Record{}, backoff.Permanent(&RetryAfterError{Delay: wait, Err: fmt.Errorf("%w: GET %s: 429", ErrAPI, path)})
		}
		return Record{}, backoff.RetryAfter(int((wait + time.Second - 1) / time.Second))
	case code >= 500 || code == http.StatusRequestTimeout:
		return Record{}, fmt.Errorf("%w: GET %s: %s", ErrAPI, path, resp.Status)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		// A configuration problem, not the message's: retry with the group's
		// backoff (and dead-letter eventually) rather than dropping.
		return Record{}, backoff.Permanent(fmt.Errorf("%w: GET %s: %s (check SPECTORA_API_TOKEN and its permissions)", ErrAPI, path, resp.Status))
	default:
		return Record{}, backoff.Permanent(Permanent(fmt.Errorf("GET %s: %s", path, resp.Status)))
	}
}

// maxRecordBytes bounds one API answer (records are a few KiB).
const maxRecordBytes = 16 << 20

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, fallback time.Duration) time.Duration {
	if v == "" {
		return fallback
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return fallback
}
