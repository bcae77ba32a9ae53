package gateway_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/webhook"
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
