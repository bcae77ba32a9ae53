package spectora

import (
	"context"
	"encoding/json"
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
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// DefaultURL is Spectora's API base URL as third-party integrations use it
// (not confirmed by Spectora's public documentation).
const DefaultURL = "https://connect.spectora.com"

// DefaultPaths maps a subject's resource to its JSON:API record path. Agents
// are "connections" in Spectora's API, clients "contacts"; the contacts path
// is a guess (unconfirmed).
func DefaultPaths() map[string]string {
	return map[string]string{
		"inspection": "/v2/inspections/{id}",
		"agent":      "/v2/connections/{id}",
		"client":     "/v2/contacts/{id}",
	}
}

// DefaultListPaths maps a resource to the path listing its records (not
// confirmed by Spectora's public documentation: the record paths without the
// ID).
func DefaultListPaths() map[string]string {
	return map[string]string{
		"inspection": "/v2/inspections",
		"agent":      "/v2/connections",
		"client":     "/v2/contacts",
	}
}

// DefaultSinceParam is the list filter selecting records updated at or after
// a time. Spectora documents filter[...] parameters but not this one's name:
// a guess, configurable.
const DefaultSinceParam = "filter[updated_since]"

// Config configures a Client for one Spectora company. Zero values take the
// documented defaults; nil Logger, Metrics and TracerProvider turn them off.
type Config struct {
	// BaseURL is the API's base URL; default DefaultURL.
	BaseURL string
	// Token is the company's API key, sent as "Authorization: Bearer <token>".
	// Required.
	Token string
	// Paths maps resources to path templates with "{id}"; default DefaultPaths.
	// A resource without a path is not fetched.
	Paths map[string]string
	// ListPaths maps resources to the path listing their records, for the
	// reconciler; default DefaultListPaths. A resource without one is not
	// listed.
	ListPaths map[string]string
	// SinceParam is the list query parameter selecting records changed at or
	// after a time (RFC 3339); default DefaultSinceParam.
	SinceParam string
	// PageSize is the records asked for per list page (page[size]); default
	// 200, Spectora's maximum.
	PageSize int
	// Timeout bounds one HTTP request; default 10s.
	Timeout time.Duration
	// MaxAttempts bounds tries per fetch (5xx, timeouts, 429, malformed
	// answers); default 4.
	MaxAttempts int
	// RateLimit is the most requests per second this client sends; default 5.
	// Instances share the company's quota, so divide it by their number.
	RateLimit float64
	// RateBurst is the limiter's burst; default 1.
	RateBurst int
	// MaxRetryAfter is the longest Retry-After waited for in process; a longer
	// one is returned as an *Error with RetryAfter set. Default 10s.
	MaxRetryAfter time.Duration
	// HTTPClient sends the requests; default a client with Timeout.
	HTTPClient *http.Client
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
	// Metrics counts requests by status and their latency; nil records nothing.
	Metrics *Metrics
	// TracerProvider makes a CLIENT span per request (otelhttp) on the default
	// HTTPClient; nil turns tracing off.
	TracerProvider trace.TracerProvider
	// Propagator writes trace context into requests; default W3C.
	Propagator propagation.TextMapPropagator
}

// Record is what the API said about one record.
type Record struct {
	// Status is RECORD_STATUS_FOUND (Body holds the JSON:API document),
	// RECORD_STATUS_GONE (404 or 410) or RECORD_STATUS_NOT_FETCHED (a resource
	// without a path, or no ID).
	Status spectorav1.RecordStatus
	// Body is the JSON:API document byte for byte.
	Body []byte
	// Path is the request path, e.g. /v2/inspections/42.
	Path string
	// FetchedAt is when the request left: the record reflects at least every
	// change made before then.
	FetchedAt time.Time
}

// MaxIdleConns is how many idle keep-alive connections the default
// HTTPClient keeps to the API: enough for the enricher's concurrent fetches.
const MaxIdleConns = 64

// Client fetches Spectora records with retries, backoff and a rate limit.
type Client struct {
	cfg     Config
	base    *url.URL
	limiter *rate.Limiter
	log     *slog.Logger
}

// NewClient validates cfg.
func NewClient(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultURL
	}
	if cfg.Paths == nil {
		cfg.Paths = DefaultPaths()
	}
	if cfg.ListPaths == nil {
		cfg.ListPaths = DefaultListPaths()
	}
	if cfg.SinceParam == "" {
		cfg.SinceParam = DefaultSinceParam
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 200
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
	base, err := ParseURL(cfg.BaseURL)
	switch {
	case err != nil:
		return nil, err
	case strings.TrimSpace(cfg.Token) == "":
		return nil, fmt.Errorf("%w: token is empty", ErrConfig)
	case cfg.RateLimit < 0:
		return nil, fmt.Errorf("%w: rate limit %g: must be positive", ErrConfig, cfg.RateLimit)
	case cfg.MaxAttempts < 1:
		return nil, fmt.Errorf("%w: max attempts %d: want at least 1", ErrConfig, cfg.MaxAttempts)
	case cfg.PageSize < 1 || cfg.PageSize > 200:
		return nil, fmt.Errorf("%w: page size %d: want 1 to 200", ErrConfig, cfg.PageSize)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("%w: timeout %s: must not be negative", ErrConfig, cfg.Timeout)
	}
	if err := checkPaths(cfg.Paths); err != nil {
		return nil, err
	}
	if err := checkListPaths(cfg.ListPaths); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		// A transport of its own, keeping as many idle connections as
		// requests run at once: net/http keeps 2 per host by default, so
		// concurrent fetches beyond that dialled (and, over TLS, handshook)
		// a new connection for nearly every request.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = MaxIdleConns
		var rt http.RoundTripper = t
		if cfg.TracerProvider != nil {
			rt = otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(cfg.TracerProvider), otelhttp.WithPropagators(cfg.Propagator))
		}
		cfg.HTTPClient = &http.Client{Timeout: cfg.Timeout, Transport: rt}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, base: base, limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst),
		log: cfg.Logger.With("component", "spectora-api")}, nil
}

// ParseURL checks an API base URL: http or https with a host. Its errors
// never repeat credentials written into the URL.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: base URL %q: want an http(s) URL with a host", ErrConfig, redact(raw))
	}
	return u, nil
}

// redact hides whatever sits between "://" and "@" in a URL that may not parse.
func redact(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.LastIndex(raw[i+3:], "@"); j >= 0 {
			return raw[:i+3] + "REDACTED@" + raw[i+3+j+1:]
		}
	}
	if j := strings.LastIndex(raw, "@"); j >= 0 {
		return "REDACTED@" + raw[j+1:]
	}
	return raw
}

// ParsePaths reads "inspection=/v2/inspections/{id},agent=/v2/connections/{id}":
// entries override DefaultPaths; an empty path removes a resource.
func ParsePaths(s string) (map[string]string, error) {
	return parseOverrides(s, DefaultPaths(), "paths", "resource=/path/{id}", checkPaths)
}

// parseOverrides reads comma-separated resource=path entries over defaults;
// an empty path removes the resource. what and form name the setting's kind
// in errors.
func parseOverrides(s string, paths map[string]string, what, form string, check func(map[string]string) error) (map[string]string, error) {
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		res, p, ok := strings.Cut(entry, "=")
		res, p = strings.TrimSpace(res), strings.TrimSpace(p)
		if !ok || res == "" {
			return nil, fmt.Errorf("%w: %s entry %q: want %s", ErrConfig, what, entry, form)
		}
		if p == "" {
			delete(paths, res)
			continue
		}
		paths[res] = p
	}
	return paths, check(paths)
}

func checkPaths(paths map[string]string) error {
	for res, p := range paths {
		if !strings.HasPrefix(p, "/") || !strings.Contains(p, "{id}") {
			return fmt.Errorf("%w: path %s=%q: want a path starting with / and containing {id}", ErrConfig, res, p)
		}
	}
	return nil
}

// Fetch gets one record. 404 and 410 mean the record is gone (not an error);
// 5xx, timeouts, 429 and malformed answers are retried with jittered
// exponential backoff (429 honours Retry-After); a resource without a path
// is not fetched. Failures are *Error values.
func (c *Client) Fetch(ctx context.Context, resource, id string) (Record, error) {
	path := c.RecordPath(resource, id)
	if path == "" || id == "" {
		return Record{Status: spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED}, nil
	}
	target := c.base.JoinPath(path).String()
	return retry(ctx, c, path, func() (Record, error) { return c.once(ctx, resource, path, target) })
}

// retry runs op with jittered exponential backoff, at most MaxAttempts
// times. Out of attempts while rate limited, it returns an *Error with the
// API's Retry-After, so the caller comes back after it.
func retry[T any](ctx context.Context, c *Client, path string, op func() (T, error)) (T, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	v, err := backoff.Retry(ctx, op, backoff.WithBackOff(b), backoff.WithMaxTries(uint(c.cfg.MaxAttempts)), backoff.WithMaxElapsedTime(0))
	var ra *backoff.RetryAfterError
	if errors.As(err, &ra) {
		return v, &Error{Path: path, Status: http.StatusTooManyRequests, RetryAfter: ra.Duration, Err: errors.New("rate limited")}
	}
	return v, err
}

func (c *Client) once(ctx context.Context, resource, path, target string) (Record, error) {
	code, body, start, err := c.request(ctx, resource, path, target)
	if err != nil {
		return Record{}, err
	}
	if code == http.StatusNotFound || code == http.StatusGone {
		return Record{Status: spectorav1.RecordStatus_RECORD_STATUS_GONE, Path: path, FetchedAt: start}, nil
	}
	if err := checkDocument(body); err != nil {
		// A truncated or garbled answer: ask again; never call it found.
		return Record{}, &Error{Path: path, Status: code, Err: err}
	}
	return Record{Status: spectorav1.RecordStatus_RECORD_STATUS_FOUND, Body: body, Path: path, FetchedAt: start}, nil
}

// request sends one GET within the rate limit and reads the answer. It
// returns 200 with its body and 404/410 without error; every other outcome is
// an error for backoff.Retry: 5xx, 408, timeouts and unreadable bodies are
// retried, 429 waits for Retry-After (or is returned when that is longer
// than MaxRetryAfter), anything else is permanent. start is when the request
// left.
func (c *Client) request(ctx context.Context, resource, path, target string) (code int, body []byte, start time.Time, err error) {
	fail := func(status int, permanent bool, err error) (int, []byte, time.Time, error) {
		e := &Error{Path: path, Status: status, Permanent: permanent, Err: err}
		if permanent {
			return 0, nil, start, backoff.Permanent(e)
		}
		return 0, nil, start, e
	}
	if err := c.limiter.Wait(ctx); err != nil {
		return fail(0, true, fmt.Errorf("rate limiter: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fail(0, true, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Accept", "application/vnd.api+json, application/json")
	start = time.Now()
	resp, err := c.cfg.HTTPClient.Do(req)
	c.cfg.Metrics.observe(resource, resp, time.Since(start))
	if err != nil {
		if ctx.Err() != nil {
			return fail(0, true, ctx.Err())
		}
		return fail(0, false, err) // timeouts, resets: retry
	}
	defer func() { _ = resp.Body.Close() }()
	body, err = io.ReadAll(io.LimitReader(resp.Body, MaxRecordBytes+1))
	if err != nil {
		return fail(resp.StatusCode, false, fmt.Errorf("read body: %w", err))
	}
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		if len(body) > MaxRecordBytes {
			// Never store a cut-off document as the record.
			return fail(code, true, fmt.Errorf("answer larger than %d bytes", MaxRecordBytes))
		}
		return code, body, start, nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return code, nil, start, nil
	case code == http.StatusTooManyRequests:
		wait := retryAfter(resp.Header.Get("Retry-After"), time.Second)
		if wait > c.cfg.MaxRetryAfter {
			return 0, nil, start, backoff.Permanent(&Error{Path: path, Status: code, RetryAfter: wait, Err: errors.New("rate limited")})
		}
		return 0, nil, start, backoff.RetryAfter(int((wait + time.Second - 1) / time.Second))
	case code >= 500 || code == http.StatusRequestTimeout:
		return fail(code, false, errors.New(http.StatusText(code)))
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		// A configuration problem, not the record's: the caller retries with
		// its own backoff (and dead-letters eventually) rather than dropping.
		return 0, nil, start, backoff.Permanent(&Error{Path: path, Status: code, Err: errors.New("token refused (check the API token and its permissions)")})
	default:
		return fail(code, true, errors.New(http.StatusText(code)))
	}
}

// MaxRecordBytes bounds one API answer (records are a few KiB).
const MaxRecordBytes = 16 << 20

// checkDocument accepts a JSON:API document holding one resource object:
// {"data": {"id": …, "type": …, …}}.
func checkDocument(body []byte) error {
	var doc struct {
		Data *struct {
			ID   json.RawMessage `json:"id"`
			Type json.RawMessage `json:"type"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("answer is not a JSON:API document: %w", err)
	}
	if doc.Data == nil || len(doc.Data.ID) == 0 || len(doc.Data.Type) == 0 {
		return errors.New(`answer is not a JSON:API document: no "data" object with "id" and "type"`)
	}
	return nil
}

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
