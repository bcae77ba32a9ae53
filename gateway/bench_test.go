package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/webhook"
	"github.com/spectora-stream/spectora-stream/stream"
)

// BenchmarkWebhook measures the whole handler path over loopback HTTP: verify,
// extract, envelope, async publish to a real in-process JetStream (file
// storage) and wait for the PubAck, with parallel clients.
func BenchmarkWebhook(b *testing.B) {
	h := newHarness(b, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	body := webhook.Body("inspection.confirmed", "42", nil)
	var n atomic.Int64
	b.SetParallelism(16) // 16 × GOMAXPROCS clients in flight
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("msg_b%d", n.Add(1))
			hdr, err := h.signer.Headers(id, time.Now(), body)
			if err != nil {
				b.Error(err)
				return
			}
			req, _ := http.NewRequest(http.MethodPost, h.url+"/webhooks/spectora", bytes.NewReader(body))
			req.Header = hdr
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkVerifyAndEnvelope measures the CPU work per webhook without I/O:
// signature check, type/ID extraction, routing and protobuf encoding.
func BenchmarkVerifyAndEnvelope(b *testing.B) {
	secret := newSecret(b)
	v, err := NewVerifier("BENCH", []string{secret})
	if err != nil {
		b.Fatal(err)
	}
	body := webhook.Body("inspection.confirmed", "42", map[string]any{"padding": string(bytes.Repeat([]byte("x"), 400))})
	now := time.Now()
	hdrs := SignedHeaders{ID: "msg_bench", Timestamp: fmt.Sprint(now.Unix()), Signature: svixSign(b, secret, "msg_bench", now, body)}
	fields := DefaultFields()
	b.ReportAllocs()
	for b.Loop() {
		signedAt, err := v.Verify(hdrs, body)
		if err != nil {
			b.Fatal(err)
		}
		typ, id := fields.Extract(body)
		if _, err := Message(Inbound{ID: hdrs.ID, Type: typ, RecordID: id, Source: DefaultSource, Route: stream.RouteFor(typ), SignedAt: signedAt, ReceivedAt: now, Body: body}); err != nil {
			b.Fatal(err)
		}
	}
}
