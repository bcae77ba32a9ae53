package gateway_test

// Each test here replays an attack or fault from the hardening review and
// checks it is refused or survived with nothing lost.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
	"github.com/spectora-stream/spectora-stream/stream"
)

// rawRequest writes a hand-made request on a fresh connection and returns it
// with a reader for the answer.
func rawRequest(t *testing.T, url, head string, body []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if len(body) > 0 {
		if _, err := conn.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	return conn, bufio.NewReader(conn)
}

// answer reads one response; closed reports whether the server then closed
// the connection.
func answer(t *testing.T, conn net.Conn, r *bufio.Reader) (status int, hdr http.Header, closed bool) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = r.ReadByte()
	// EOF, or a reset when the server closed with our body unread; a
	// timeout means the connection was kept.
	return resp.StatusCode, resp.Header, err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// Headers are checked before the body is read: a request announcing a
// megabyte without signature headers, or with a stale timestamp, is answered
// 401 after a few bytes of it, and its connection closed.
func TestHeadersAreCheckedBeforeTheBodyIsRead(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for name, extra := range map[string]string{
		"no signature headers":   "",
		"stale timestamp":        fmt.Sprintf("svix-id: msg_1\r\nsvix-timestamp: %d\r\nsvix-signature: v1,%s\r\n", time.Now().Add(-time.Hour).Unix(), strings.Repeat("A", 43)+"="),
		"no plausible signature": fmt.Sprintf("svix-id: msg_1\r\nsvix-timestamp: %d\r\nsvix-signature: v1,short\r\n", time.Now().Unix()),
	} {
		t.Run(name, func(t *testing.T) {
			head := "POST /webhooks/spectora HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n" + extra + "\r\n"
			conn, r := rawRequest(t, h.url, head, bytes.Repeat([]byte("x"), 9000))
			status, _, closed := answer(t, conn, r)
			if status != http.StatusUnauthorized || !closed {
				t.Fatalf("status %d, closed %v: want 401 before the body and the connection closed", status, closed)
			}
		})
	}
}

// The bodies in flight share a memory budget: past it, 503 at once, and the
// budget comes back when they finish.
func TestInflightBodiesShareABudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *gateway.Config) {
		c.BodyLimit = 32 << 10
		c.MaxInflightBytes = 64 << 10
		c.ReadTimeout = 3 * time.Second
	})
	// Two slow bodies with headers that could be genuine hold the budget.
	head := func(id string) string {
		return fmt.Sprintf("POST /webhooks/spectora HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nsvix-id: %s\r\nsvix-timestamp: %d\r\nsvix-signature: v1,%s\r\n\r\n",
			32<<10, id, time.Now().Unix(), strings.Repeat("A", 43)+"=")
	}
	var slow []net.Conn
	for i := range 2 {
		conn, _ := rawRequest(t, h.url, head(fmt.Sprint("msg_slow", i)), bytes.Repeat([]byte("x"), 10000))
		slow = append(slow, conn)
	}
	natstest.Eventually(t, 10*time.Second, "both slow bodies being read", func() bool {
		return natstest.Metric(t, h.reg, "spectora_gateway_inflight_requests", nil) == 2
	})
	// fasthttp reads the first 8 KiB of a body before the handler runs.
	conn, r := rawRequest(t, h.url, head("msg_third"), bytes.Repeat([]byte("x"), 9000))
	if status, hdr, _ := answer(t, conn, r); status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("third body: status %d, Retry-After %q; want 503 busy", status, hdr.Get("Retry-After"))
	}
	if got := h.requests(t, "busy", gateway.DefaultSource); got < 1 {
		t.Fatalf("busy metric %g", got)
	}
	for _, c := range slow {
		c.Close()
	}
	// A genuine webhook gets through once the slow bodies are gone.
	natstest.Eventually(t, 5*time.Second, "a genuine webhook stored", func() bool {
		status, _, _ := h.send(t, "/webhooks/spectora", h.secret, "msg_genuine", time.Now(), []byte(`{"type":"a.b"}`))
		return status == http.StatusOK
	})
}

// A flood of unsigned requests from one address can't starve genuine
// webhooks from another: refusals are limited per address, and only
// verified webhooks spend the source's RATE_LIMIT.
func TestRefusedFloodDoesNotStarveGenuineWebhooks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *gateway.Config) {
		c.RateLimit, c.RateBurst = 20, 40
		c.RefusedRateLimit, c.RefusedRateBurst = 5, 10
		c.TrustedProxies = []string{"127.0.0.1"} // the test plays the load balancer
	})
	ctx, stop := context.WithCancel(context.Background())
	var flood, refusedTooOften atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodPost, h.url+"/webhooks/spectora", strings.NewReader("{}"))
				req.Header.Set("X-Forwarded-For", "203.0.113.9")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				flood.Add(1)
				if resp.StatusCode == http.StatusTooManyRequests {
					refusedTooOften.Add(1)
				}
			}
		})
	}
	body := []byte(`{"type":"inspection.confirmed","id":1}`)
	accepted := 0
	for i := range 60 {
		hdr, _ := h.signer.Headers(fmt.Sprintf("msg_g%d", i), time.Now(), body)
		hdr.Set("X-Forwarded-For", "198.51.100.7")
		if status, _, out := h.post(t, "/webhooks/spectora", hdr, body); status == http.StatusOK {
			accepted++
		} else {
			t.Logf("genuine %d: %d %s", i, status, out)
		}
		time.Sleep(25 * time.Millisecond) // 40/s: inside RATE_LIMIT 20/s with burst 40 over 1.5 s
	}
	stop()
	wg.Wait()
	t.Logf("genuine accepted %d of 60 during a flood of %d unsigned requests (%d answered 429 without verification)", accepted, flood.Load(), refusedTooOften.Load())
	if accepted != 60 {
		t.Fatalf("%d of 60 genuine webhooks accepted", accepted)
	}
	if refusedTooOften.Load() == 0 || refusedTooOften.Load() < flood.Load()/2 {
		t.Fatalf("the flooding address was not limited: %d of %d answered 429", refusedTooOften.Load(), flood.Load())
	}
}

// Ambiguous framing (RFC 9112 §6.3) is refused and the connection closed.
func TestAmbiguousFramingIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for name, head := range map[string]string{
		"Content-Length and chunked": "POST /webhooks/spectora HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"two Content-Lengths":        "POST /webhooks/spectora HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, r := rawRequest(t, h.url, head, []byte("0\r\n\r\n"))
			status, _, closed := answer(t, conn, r)
			if status != http.StatusBadRequest || !closed {
				t.Fatalf("status %d, closed %v: want 400 and the connection closed", status, closed)
			}
		})
	}
}

// A signed webhook whose message can't fit the NATS server's max payload is
// answered 413 with webhook-delivery: abort-message, never 503 forever.
func TestWebhookOverTheServersMaxPayloadIs413AndAborted(t *testing.T) {
	t.Parallel()
	srv := natstest.ServerWith(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), MaxPayload: 16 << 10})
	nc, js := natstest.JetStream(t, srv)
	if _, err := js.CreateOrUpdateStream(context.Background(), stream.RawConfig(stream.DefaultLimits())); err != nil {
		t.Fatal(err)
	}
	h := &harness{srv: srv, nc: nc, js: js, secret: newSecret(t)}
	gw, err := gateway.New(gateway.Config{Secrets: []string{h.secret}}, js, natsx.NewHealth(&natsx.Conn{NC: nc}, js))
	if err != nil {
		t.Fatal(err)
	}
	h.gw = gw
	h.start(t)
	body := []byte(`{"type":"inspection.confirmed","pad":"` + strings.Repeat("x", 20<<10) + `"}`)
	status, hdr, out := h.send(t, "/webhooks/spectora", h.secret, "msg_huge", time.Now(), body)
	if status != http.StatusRequestEntityTooLarge || hdr.Get("webhook-delivery") != "abort-message" || errorCode(t, out) != "body_too_large" {
		t.Fatalf("status %d abort %q: %s", status, hdr.Get("webhook-delivery"), out)
	}
}

// A body of exactly HTTP_BODY_LIMIT is stored; one with a 590 KB "type"
// too (unrouted: no event type is that long), with nothing lost.
func TestLargestBodiesAreStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	limit := 1_000_000
	prefix, suffix := `{"type":"inspection.confirmed","pad":"`, `"}`
	exact := []byte(prefix + strings.Repeat("x", limit-len(prefix)-len(suffix)) + suffix)
	longType := []byte(`{"type":"` + strings.Repeat("t", 590_000) + `","id":1}`)
	for name, body := range map[string][]byte{"exactly the limit": exact, "590 KB type": longType} {
		status, _, out := h.send(t, "/webhooks/spectora", h.secret, "msg_"+strings.ReplaceAll(name, " ", "_"), time.Now(), body)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", name, status, out)
		}
	}
}

// Signed webhooks with odd bytes are stored or refused with 4xx, never 500.
func TestOddBytesNeverAnswer500(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	body := []byte(`{"type":"agent.updated","id":1}`)
	hdr, _ := h.signer.Headers("msg_odd", time.Now(), body)
	hdr.Set("Content-Type", "application/json; charset=\xff\xfe")
	if status, _, out := h.post(t, "/webhooks/spectora", hdr, body); status != http.StatusOK {
		t.Fatalf("non-UTF-8 Content-Type: %d %s", status, out)
	}
	hdr, _ = h.signer.Headers("msg_\xff\xfe", time.Now(), body)
	if status, _, out := h.post(t, "/webhooks/spectora", hdr, body); status != http.StatusUnauthorized || errorCode(t, out) != "malformed_signature_headers" {
		t.Fatalf("non-ASCII svix-id: %d %s", status, out)
	}
}

// A stream at NATS_STREAM_MAX_BYTES refuses new events with 503 stream_full;
// nothing stored is evicted to make room.
func TestFullStreamAnswers503AndEvictsNothing(t *testing.T) {
	t.Parallel()
	srv := natstest.Server(t)
	nc, js := natstest.JetStream(t, srv, jetstream.WithPublishAsyncTimeout(5*time.Second))
	limits := stream.DefaultLimits()
	limits.MaxBytes = 4096
	if _, err := js.CreateOrUpdateStream(context.Background(), stream.RawConfig(limits)); err != nil {
		t.Fatal(err)
	}
	h := &harness{srv: srv, nc: nc, js: js, secret: newSecret(t)}
	gw, err := gateway.New(gateway.Config{Secrets: []string{h.secret}}, js, natsx.NewHealth(&natsx.Conn{NC: nc}, js))
	if err != nil {
		t.Fatal(err)
	}
	h.gw = gw
	h.start(t)
	full := false
	for i := 0; i < 100 && !full; i++ {
		status, hdr, out := h.send(t, "/webhooks/spectora", h.secret, "msg_f"+strconv.Itoa(i), time.Now(), webhook.Body("inspection.confirmed", strconv.Itoa(i), nil))
		switch {
		case status == http.StatusServiceUnavailable:
			if errorCode(t, out) != "stream_full" || hdr.Get("Retry-After") == "" {
				t.Fatalf("503 %s, Retry-After %q", out, hdr.Get("Retry-After"))
			}
			full = true
		case status != http.StatusOK:
			t.Fatalf("status %d: %s", status, out)
		}
	}
	if !full {
		t.Fatal("the stream never filled")
	}
	if info := natstest.StreamInfo(t, js, stream.Raw); info.State.FirstSeq != 1 {
		t.Fatalf("first sequence %d: stored events were evicted", info.State.FirstSeq)
	}
}
