package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"github.com/spectora-stream/spectora-stream/internal/webhook"
	"github.com/spectora-stream/spectora-stream/stream"
)

// endToEnd sends genuine webhooks at --rate for --duration and times each
// from its POST to the delivery of its enriched event to a plain NATS
// subscriber (matched by Nats-Msg-Id, the svix-id the enricher republishes
// under).
func (c *benchCmd) endToEnd(ctx context.Context) error {
	switch {
	case c.Enriched == "" || c.Rate <= 0:
		return usageError{fmt.Errorf("end-to-end latency needs both --enriched-from and a positive --rate")}
	case c.Mode != "genuine":
		return usageError{fmt.Errorf("--mode %s: end-to-end latency sends genuine webhooks only", c.Mode)}
	case c.Duration <= 0:
		return usageError{fmt.Errorf("--duration %s: must be positive", c.Duration)}
	}
	signer, err := webhook.NewSigner(c.Secret)
	if err != nil {
		return usageError{fmt.Errorf("SPECTORA_WEBHOOK_SECRET: %w", err)}
	}
	nc, err := nats.Connect(c.Enriched, nats.Name("spectora-stream bench"))
	if err != nil {
		return fmt.Errorf("--enriched-from %s: %w", c.Enriched, err)
	}
	defer nc.Close()

	n := max(1, int(c.Rate*c.Duration.Seconds()))
	pad := strings.Repeat("x", max(0, c.Size-60))
	ids := make([]string, n)
	index := make(map[string]int, n)
	for i := range ids {
		ids[i] = webhook.NewMessageID()
		index[ids[i]] = i
	}
	// Each request is signed just before it leaves: a soak outlasts Svix's
	// five-minute timestamp tolerance, and at a fixed pace the HMAC's few
	// microseconds don't matter.
	build := func(i int) (prepared, error) {
		// A record per event: every event but a deletion costs an API fetch.
		typ := webhook.EventTypes[i%len(webhook.EventTypes)]
		p := prepared{body: webhook.Body(typ, strconv.Itoa(i+1), map[string]any{"padding": pad})}
		hdr, err := signer.Headers(ids[i], time.Now(), p.body)
		for k, v := range hdr {
			p.headers = append(p.headers, [2]string{k, v[0]})
		}
		return p, err
	}

	sent := make([]atomic.Int64, n) // unix nanos each POST was due; 0 until then
	end := make([]time.Duration, n) // due time to enriched delivery; 0 until delivered
	var mu sync.Mutex
	var delivered atomic.Int64
	sub, err := nc.Subscribe(stream.EnrichedSubjects, func(m *nats.Msg) {
		now := time.Now().UnixNano()
		i, ok := index[m.Header.Get(nats.MsgIdHdr)]
		if !ok {
			return // another run's event
		}
		t0 := sent[i].Load()
		mu.Lock()
		defer mu.Unlock()
		if t0 == 0 || end[i] != 0 {
			return
		}
		end[i] = time.Duration(now - t0)
		delivered.Add(1)
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return err
	}

	client := &fasthttp.Client{MaxConnsPerHost: c.Concurrency, MaxIdleConnDuration: time.Minute,
		ReadTimeout: c.Timeout, WriteTimeout: c.Timeout, NoDefaultUserAgentHeader: true, DisableHeaderNamesNormalizing: true}
	defer client.CloseIdleConnections()
	fmt.Printf("bench: end to end, %d webhooks at %g/s to %s, enriched events from %s\n", n, c.Rate, c.URL, c.Enriched)
	var (
		wg       sync.WaitGroup
		statusMu sync.Mutex
		byStatus = map[string]int{}
		postLat  = make([]time.Duration, n)
		slots    = make(chan struct{}, c.Concurrency)
		accepted atomic.Int64
		buildErr error
	)
	// Open loop: each POST is due at start + i/rate, and both latencies run
	// from that due time, so a POST that waited for a free client counts its
	// wait instead of hiding it.
	interval := time.Duration(float64(time.Second) / c.Rate)
	start := time.Now()
	late, issued := 0, 0
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		p, err := build(i)
		if err != nil {
			buildErr = err
			break
		}
		sent[i].Store(due.UnixNano())
		select {
		case slots <- struct{}{}:
		default:
			late++ // every client busy: this POST leaves late
			slots <- struct{}{}
		}
		issued++
		wg.Go(func() {
			defer func() { <-slots }()
			code := c.once(client, p)
			postLat[i] = time.Since(due)
			if code == "200" {
				accepted.Add(1)
			}
			statusMu.Lock()
			byStatus[code]++
			statusMu.Unlock()
		})
	}
	wg.Wait()
	if buildErr != nil {
		return buildErr
	}
	sending := time.Since(start)
	// Only webhooks answered 200 were stored, so only they come back enriched.
	deadline := time.Now().Add(30 * time.Second)
	for delivered.Load() < accepted.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	var lat []time.Duration
	for _, d := range end {
		if d > 0 {
			lat = append(lat, d)
		}
	}
	mu.Unlock()
	fmt.Printf("sent:       %d in %s (%.0f/s), %d waited for a free client\n", issued, sending.Round(time.Millisecond), float64(issued)/sending.Seconds(), late)
	fmt.Printf("POST:       %s\n", percentiles(postLat[:issued]))
	fmt.Printf("end to end: %s  (%d enriched events seen of %d answered 200)\n", percentiles(lat), len(lat), accepted.Load())
	codes := make([]string, 0, len(byStatus))
	for k := range byStatus {
		codes = append(codes, k)
	}
	slices.Sort(codes)
	fmt.Print("status:    ")
	for _, k := range codes {
		fmt.Printf(" %s=%d", k, byStatus[k])
	}
	fmt.Println()
	switch {
	case int64(len(lat)) < accepted.Load():
		return fmt.Errorf("%d of %d stored webhooks never arrived enriched within 30 s of the last POST", accepted.Load()-int64(len(lat)), accepted.Load())
	case accepted.Load() < int64(issued):
		return fmt.Errorf("%d of %d webhooks were not answered 200", int64(issued)-accepted.Load(), issued)
	}
	return nil
}

// percentiles formats p50, p90, p99 and max of d (sorted in place).
func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	p := func(q float64) time.Duration {
		return d[rank(len(d), q)].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s", p(0.50), p(0.90), p(0.99), d[len(d)-1].Round(10*time.Microsecond))
}

// rank is the index of the q-quantile in n sorted values (nearest rank).
func rank(n int, q float64) int {
	return min(n-1, max(0, int(math.Ceil(float64(n)*q))-1))
}
