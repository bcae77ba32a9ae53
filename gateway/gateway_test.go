package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/stream"
)

// harness runs a real gateway on a loopback port against a real in-process
// JetStream server.
type harness struct {
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	gw     *gateway.Gateway
	reg    *prometheus.Registry
	url    string
	secret string
	signer *webhook.Signer
}

func newHarness(t testing.TB, mod func(*gateway.Config)) *harness {
	t.Helper()
	h := &harness{srv: natstest.Server(t), secret: newSecret(t)}
	h.nc, h.js = natstest.JetStream(t, h.srv, jetstream.WithPublishAsyncTimeout(5*time.Second))
	var err error
	h.stream, err = natsx.EnsureStream(context.Background(), h.js, stream.RawConfig(stream.DefaultLimits()), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.reg = prometheus.NewRegistry()
	cfg := gateway.Config{Secrets: []string{h.secret}}
	if cfg.Metrics, err = gateway.NewMetrics(h.reg); err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&cfg)
	}
	h.gw, err = gateway.New(cfg, h.js, natsx.NewHealth(&natsx.Conn{NC: h.nc}, h.js))
	if err != nil {
		t.Fatal(err)
	}
	h.start(t)
	if h.signer, err = webhook.NewSigner(h.secret); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) start(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := h.gw
	go func() { _ = gw.Serve(ln) }()
	t.Cleanup(func() {
		// Connections the client dialled but never used hold Shutdown until the
		// server's read timeout; close them first.
		http.DefaultClient.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	h.url = "http://" + ln.Addr().String()
}

// send posts body to path with headers signed by secret at ts.
func (h *harness) send(t testing.TB, path, secret, msgID string, ts time.Time, body []byte) (int, http.Header, []byte) {
	t.Helper()
	signer, err := webhook.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := signer.Headers(msgID, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	return h.post(t, path, hdr, body)
}

func (h *harness) post(t testing.TB, path string, hdr http.Header, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

func (h *harness) msgCount(t testing.TB) uint64 {
	t.Helper()
	info, err := h.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func errorCode(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return e.Error.Code
}

func newSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// requests is a metric of the gateway's requests.
func (h *harness) requests(t testing.TB, outcome, source string) float64 {
	t.Helper()
	return natstest.Metric(t, h.reg, "spectora_gateway_requests_total", map[string]string{"outcome": outcome, "source": source})
}

// lastStored is the source's last-stored timestamp, 0 while absent.
func (h *harness) lastStored(t testing.TB, source string) float64 {
	t.Helper()
	return natstest.Metric(t, h.reg, "spectora_gateway_last_stored_timestamp_seconds", map[string]string{"source": source})
}

func TestWebhookStoredOnceWithHeadersAndEnvelope(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	start := float64(time.Now().Unix())
	body := []byte(`{"type":"inspection.confirmed","id":42,"extra":"kept byte for byte"}`)
	status, _, out := h.send(t, "/webhooks/spectora", h.secret, "msg_one", time.Now(), body)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, out)
	}
	var ack gateway.Accepted
	if err := json.Unmarshal(out, &ack); err != nil {
		t.Fatal(err)
	}
	if ack.Stream != stream.Raw || ack.Sequence != 1 || ack.Duplicate || ack.Subject != "spectora.inspection.confirmed" {
		t.Fatalf("ack = %+v", ack)
	}

	// A Svix retry: same ID, fresh timestamp, re-signed.
	status, _, out = h.send(t, "/webhooks/spectora", h.secret, "msg_one", time.Now().Add(time.Second), body)
	if status != http.StatusOK {
		t.Fatalf("retry status %d: %s", status, out)
	}
	if err := json.Unmarshal(out, &ack); err != nil || !ack.Duplicate || ack.Sequence != 1 {
		t.Fatalf("retry ack = %+v (%v), want duplicate of seq 1", ack, err)
	}
	if n := h.msgCount(t); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}

	raw, err := h.stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Subject != "spectora.inspection.confirmed" {
		t.Errorf("subject %q", raw.Subject)
	}
	wantHdr := map[string]string{
		stream.HeaderMsgID:       "msg_one",
		stream.HeaderEventType:   "inspection.confirmed",
		stream.HeaderRecordID:    "42",
		stream.HeaderSource:      gateway.DefaultSource,
		stream.HeaderContentType: stream.ContentTypeWebhookEvent,
	}
	for k, v := range wantHdr {
		// Exact-case lookups: NATS headers are case-sensitive.
		if got := raw.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	var ev spectorav1.WebhookEvent
	if err := proto.Unmarshal(raw.Data, &ev); err != nil {
		t.Fatalf("envelope does not decode: %v", err)
	}
	if !bytes.Equal(ev.GetBody(), body) {
		t.Errorf("body %q, want %q byte for byte", ev.GetBody(), body)
	}
	if ev.GetId() != "msg_one" || ev.GetType() != "inspection.confirmed" || ev.GetResource() != "inspection" ||
		ev.GetAction() != "confirmed" || ev.GetRecordId() != "42" || ev.GetSource() != gateway.DefaultSource ||
		ev.GetContentType() != "application/json" || ev.GetSubject() != "spectora.inspection.confirmed" {
		t.Errorf("envelope = %v", &ev)
	}
	if ev.GetSignedAt().AsTime().IsZero() || ev.GetReceivedAt().AsTime().Before(ev.GetSignedAt().AsTime().Add(-time.Second)) {
		t.Errorf("times: signed %v received %v", ev.GetSignedAt().AsTime(), ev.GetReceivedAt().AsTime())
	}
	if got := h.requests(t, "accepted", gateway.DefaultSource); got != 1 {
		t.Errorf("accepted metric = %v", got)
	}
	if got := h.requests(t, "duplicate", gateway.DefaultSource); got != 1 {
		t.Errorf("duplicate metric = %v", got)
	}
	if got := h.lastStored(t, gateway.DefaultSource); got < start || got > float64(time.Now().Unix()+1) {
		t.Errorf("last stored timestamp %v, want between %v and now", got, start)
	}
}

func TestRefusedWebhooksStoreNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	body := []byte(`{"type":"inspection.confirmed","id":1}`)
	forged := func() http.Header {
		hdr := http.Header{}
		hdr.Set("svix-id", "msg_forged")
		hdr.Set("svix-timestamp", fmt.Sprint(time.Now().Unix()))
		hdr.Set("svix-signature", "v1,"+strings.Repeat("A", 44))
		return hdr
	}
	tests := []struct {
		name     string
		do       func() (int, http.Header, []byte)
		wantCode string
	}{
		{"wrong secret", func() (int, http.Header, []byte) {
			return h.send(t, "/webhooks/spectora", newSecret(t), "msg_a", time.Now(), body)
		}, "invalid_signature"},
		{"forged signature", func() (int, http.Header, []byte) { return h.post(t, "/webhooks/spectora", forged(), body) }, "invalid_signature"},
		{"stale", func() (int, http.Header, []byte) {
			return h.send(t, "/webhooks/spectora", h.secret, "msg_b", time.Now().Add(-10*time.Minute), body)
		}, "timestamp_too_old"},
		{"future", func() (int, http.Header, []byte) {
			return h.send(t, "/webhooks/spectora", h.secret, "msg_c", time.Now().Add(10*time.Minute), body)
		}, "timestamp_too_new"},
		{"unsigned", func() (int, http.Header, []byte) { return h.post(t, "/webhooks/spectora", http.Header{}, body) }, "missing_signature_headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, out := tt.do()
			if status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", status, out)
			}
			if code := errorCode(t, out); code != tt.wantCode {
				t.Fatalf("code %q, want %q", code, tt.wantCode)
			}
			if strings.Contains(string(out), strings.TrimPrefix(h.secret, "whsec_")) {
				t.Fatal("error body echoes the secret")
			}
		})
	}
	if n := h.msgCount(t); n != 0 {
		t.Fatalf("stream holds %d messages after refused webhooks", n)
	}
	if got := h.lastStored(t, gateway.DefaultSource); got != 0 {
		t.Fatalf("refused webhooks set the last stored timestamp to %v", got)
	}
}

func TestWebhookHeadersFamily(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	body := []byte(`{"type":"agent.updated","id":"a-1"}`)
	hdr, err := h.signer.Headers("msg_wh", time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	// White-labelled senders use webhook-* instead of svix-*.
	alt := http.Header{}
	alt.Set("webhook-id", hdr.Get("svix-id"))
	alt.Set("webhook-timestamp", hdr.Get("svix-timestamp"))
	alt.Set("webhook-signature", hdr.Get("svix-signature"))
	if status, _, out := h.post(t, "/webhooks/spectora", alt, body); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, out)
	}
}

func TestUnreadableTypeIsStoredUnrouted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for i, body := range [][]byte{[]byte(`not json at all`), []byte(`{"kind":"mystery"}`)} {
		status, _, out := h.send(t, "/webhooks/spectora", h.secret, fmt.Sprintf("msg_u%d", i), time.Now(), body)
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, out)
		}
		var ack gateway.Accepted
		_ = json.Unmarshal(out, &ack)
		if ack.Subject != "spectora.unrouted.unknown" {
			t.Fatalf("subject %q", ack.Subject)
		}
		raw, err := h.stream.GetMsg(context.Background(), ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		var ev spectorav1.WebhookEvent
		if err := proto.Unmarshal(raw.Data, &ev); err != nil || !bytes.Equal(ev.GetBody(), body) {
			t.Fatalf("unrouted envelope body %q (%v)", ev.GetBody(), err)
		}
	}
	if got := h.requests(t, "unrouted", gateway.DefaultSource); got != 2 {
		t.Errorf("unrouted metric = %v", got)
	}
}

func TestBodyOverLimitIs413(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *gateway.Config) { c.BodyLimit = 4096 })
	body := []byte(`{"type":"inspection.confirmed","pad":"` + strings.Repeat("x", 5000) + `"}`)
	status, hdr, out := h.send(t, "/webhooks/spectora", h.secret, "msg_big", time.Now(), body)
	if status != http.StatusRequestEntityTooLarge || hdr.Get("webhook-delivery") != "abort-message" {
		t.Fatalf("status %d, want 413: %s", status, out)
	}
	if code := errorCode(t, out); code != "body_too_large" {
		t.Fatalf("code %q", code)
	}
	if n := h.msgCount(t); n != 0 {
		t.Fatalf("stored %d", n)
	}
	if got := h.requests(t, "too_large", gateway.DefaultSource); got != 1 {
		t.Errorf("too_large metric = %v", got)
	}
}

func TestJetStreamDownAnswers503(t *testing.T) {
	t.Parallel()
	t.Run("server stopped", func(t *testing.T) {
		h := newHarness(t, nil)
		h.srv.Shutdown()
		h.srv.WaitForShutdown()
		deadline := time.Now().Add(5 * time.Second)
		for h.nc.IsConnected() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		status, hdr, out := h.send(t, "/webhooks/spectora", h.secret, "msg_down", time.Now(), []byte(`{"type":"a.b"}`))
		if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
			t.Fatalf("status %d Retry-After %q, want 503 with Retry-After: %s", status, hdr.Get("Retry-After"), out)
		}
	})
	t.Run("stream missing", func(t *testing.T) {
		h := newHarness(t, nil)
		if err := h.js.DeleteStream(context.Background(), stream.Raw); err != nil {
			t.Fatal(err)
		}
		status, _, out := h.send(t, "/webhooks/spectora", h.secret, "msg_nostream", time.Now(), []byte(`{"type":"a.b"}`))
		if status != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503: %s", status, out)
		}
	})
	t.Run("no ack in time", func(t *testing.T) {
		h := newHarness(t, nil)
		gw, err := gateway.New(gateway.Config{Secrets: []string{h.secret}, PublishTimeout: 100 * time.Millisecond},
			silentPublisher{}, natsx.NewHealth(&natsx.Conn{NC: h.nc}, h.js))
		if err != nil {
			t.Fatal(err)
		}
		h.gw = gw
		h.start(t)
		status, hdr, out := h.send(t, "/webhooks/spectora", h.secret, "msg_slow", time.Now(), []byte(`{"type":"a.b"}`))
		if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "5" || errorCode(t, out) != "publish_timeout" {
			t.Fatalf("status %d Retry-After %q body %s", status, hdr.Get("Retry-After"), out)
		}
	})
}

// silentPublisher accepts publishes and never acknowledges them, like a
// JetStream that is too slow to answer within the bound.
type silentPublisher struct{}

type silentFuture struct{ msg *nats.Msg }

func (f silentFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f silentFuture) Err() <-chan error            { return nil }
func (f silentFuture) Msg() *nats.Msg               { return f.msg }

func (silentPublisher) PublishMsgAsync(msg *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return silentFuture{msg}, nil
}

func TestNamedSources(t *testing.T) {
	t.Parallel()
	acme := newSecret(t)
	h := newHarness(t, func(c *gateway.Config) { c.Sources = map[string][]string{"acme": {acme}} })
	body := []byte(`{"type":"client.created","id":5}`)
	status, _, out := h.send(t, "/webhooks/spectora/acme", acme, "msg_acme", time.Now(), body)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, out)
	}
	var ack gateway.Accepted
	_ = json.Unmarshal(out, &ack)
	raw, err := h.stream.GetMsg(context.Background(), ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get(stream.HeaderSource); got != "acme" {
		t.Fatalf("source header %q", got)
	}
	// The default secret does not open a named source, nor the reverse.
	if status, _, _ := h.send(t, "/webhooks/spectora/acme", h.secret, "msg_x", time.Now(), body); status != http.StatusUnauthorized {
		t.Fatalf("default secret on acme: %d", status)
	}
	if status, _, _ := h.send(t, "/webhooks/spectora", acme, "msg_y", time.Now(), body); status != http.StatusUnauthorized {
		t.Fatalf("acme secret on default: %d", status)
	}
	status, _, out = h.send(t, "/webhooks/spectora/nobody", acme, "msg_z", time.Now(), body)
	if status != http.StatusNotFound || errorCode(t, out) != "unknown_source" {
		t.Fatalf("unknown source: %d %s", status, out)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *gateway.Config) { c.RateLimit = 1; c.RateBurst = 2 })
	var limited int
	for i := range 5 {
		status, hdr, out := h.send(t, "/webhooks/spectora", h.secret, fmt.Sprintf("msg_r%d", i), time.Now(), []byte(`{"type":"a.b"}`))
		if status == http.StatusTooManyRequests {
			limited++
			if hdr.Get("Retry-After") != "1" || errorCode(t, out) != "rate_limited" {
				t.Fatalf("429 without Retry-After 1: %q %s", hdr.Get("Retry-After"), out)
			}
		}
	}
	if limited < 2 {
		t.Fatalf("%d of 5 rate limited, want at least 2 with burst 2", limited)
	}
}

// The webhook port serves webhooks and nothing else; the outcomes are
// counted in the metrics the ops address serves.
func TestWebhookPortServesOnlyWebhooksAndCountsThem(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/"} {
		resp, err := http.Get(h.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s on the webhook port = %d, want 404", path, resp.StatusCode)
		}
	}
	if status, _, out := h.send(t, "/webhooks/spectora", h.secret, "msg_m", time.Now(), []byte(`{"type":"a.b"}`)); status != 200 {
		t.Fatalf("status %d: %s", status, out)
	}
	h.send(t, "/webhooks/spectora", newSecret(t), "msg_n", time.Now(), []byte(`{"type":"a.b"}`))
	for outcome, want := range map[string]float64{"accepted": 1, "unauthorized": 1} {
		if got := natstest.Metric(t, h.reg, "spectora_gateway_requests_total", map[string]string{"outcome": outcome, "source": "default"}); got != want {
			t.Errorf("requests_total{outcome=%s} = %g, want %g", outcome, got, want)
		}
	}
	if got := natstest.Metric(t, h.reg, "spectora_gateway_verification_failures_total", map[string]string{"reason": "invalid_signature"}); got != 1 {
		t.Errorf("verification failures %g, want 1", got)
	}
}

func TestConcurrentWebhooksAllStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := webhook.Body(webhook.EventTypes[i%len(webhook.EventTypes)], fmt.Sprint(i), nil)
			status, _, out := h.send(t, "/webhooks/spectora", h.secret, fmt.Sprintf("msg_c%03d", i), time.Now(), body)
			if status != http.StatusOK {
				errs <- fmt.Sprintf("%d: %s", status, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := h.msgCount(t); got != n {
		t.Fatalf("stream holds %d, want %d", got, n)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	srv := natstest.Server(t)
	nc, js := natstest.JetStream(t, srv)
	health := natsx.NewHealth(&natsx.Conn{NC: nc}, js)
	tests := []struct {
		name    string
		cfg     gateway.Config
		wantErr error
		setting string
	}{
		{"no secret", gateway.Config{}, gateway.ErrNoSecret, "SPECTORA_WEBHOOK_SECRET"},
		{"bad source secret", gateway.Config{Secrets: []string{secret}, Sources: map[string][]string{"acme": {"whsec_"}}}, gateway.ErrBadSecret, "acme"},
		{"body limit", gateway.Config{Secrets: []string{secret}, BodyLimit: 10}, gateway.ErrBadConfig, "HTTP_BODY_LIMIT"},
		{"body limit over max payload", gateway.Config{Secrets: []string{secret}, BodyLimit: 1 << 20}, gateway.ErrBadConfig, "max_payload"},
		{"inflight under the body limit", gateway.Config{Secrets: []string{secret}, MaxInflightBytes: 1000}, gateway.ErrBadConfig, "HTTP_MAX_INFLIGHT_BYTES"},
		{"publish timeout over Svix's", gateway.Config{Secrets: []string{secret}, PublishTimeout: 20 * time.Second}, gateway.ErrBadConfig, "PUBLISH_TIMEOUT"},
		{"negative rate", gateway.Config{Secrets: []string{secret}, RateLimit: -1}, gateway.ErrBadConfig, "RATE_LIMIT"},
		{"negative refused rate", gateway.Config{Secrets: []string{secret}, RefusedRateLimit: -1}, gateway.ErrBadConfig, "REFUSED_RATE_LIMIT"},
		{"bad proxy", gateway.Config{Secrets: []string{secret}, TrustedProxies: []string{"lb.local"}}, gateway.ErrBadConfig, "TRUSTED_PROXIES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gateway.New(tt.cfg, js, health)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.setting) {
				t.Fatalf("New() error = %v, want %v naming %s", err, tt.wantErr, tt.setting)
			}
		})
	}
}
