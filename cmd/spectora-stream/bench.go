package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/spectora-stream/spectora-stream/internal/webhook"
)

type benchCmd struct {
	targetFlags `embed:""`
	Concurrency int           `name:"concurrency" short:"c" default:"64" help:"Requests in flight at once."`
	Duration    time.Duration `name:"duration" short:"d" default:"10s" help:"How long to run (ignored when --requests is set)."`
	Requests    int           `name:"requests" short:"n" default:"0" help:"Send exactly this many requests."`
	Size        int           `name:"size" default:"512" help:"Approximate body size in bytes (Spectora's thin payloads are small)."`
	Timeout     time.Duration `name:"timeout" default:"15s" help:"Per-request timeout, like Svix's."`
}

// benchResult is what one bench run measured.
type benchResult struct {
	elapsed   time.Duration
	latencies []time.Duration
	byStatus  map[string]int
}

func (c *benchCmd) Run(ctx context.Context, _ *slog.Logger) error {
	if c.Concurrency < 1 {
		return fmt.Errorf("--concurrency %d: want at least 1", c.Concurrency)
	}
	if c.Requests < 0 || (c.Requests == 0 && c.Duration <= 0) {
		return fmt.Errorf("--requests or a positive --duration is needed")
	}
	signer, err := webhook.NewSigner(c.Secret)
	if err != nil {
		return fmt.Errorf("SPECTORA_WEBHOOK_SECRET: %w", err)
	}
	fmt.Printf("bench: POST %s, concurrency %d, ", c.URL, c.Concurrency)
	if c.Requests > 0 {
		fmt.Printf("%d requests, body ≈ %d B\n", c.Requests, c.Size)
	} else {
		fmt.Printf("for %s, body ≈ %d B\n", c.Duration, c.Size)
	}
	res, err := c.run(ctx, signer)
	if err != nil {
		return err
	}
	res.print()
	return nil
}

func (c *benchCmd) run(ctx context.Context, signer *webhook.Signer) (*benchResult, error) {
	// fasthttp's client costs a fraction of net/http's CPU per request; on a
	// small machine shared with the gateway, that CPU goes to the gateway.
	client := &fasthttp.Client{
		MaxConnsPerHost:               c.Concurrency,
		MaxIdleConnDuration:           time.Minute,
		ReadTimeout:                   c.Timeout,
		WriteTimeout:                  c.Timeout,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
	}
	defer client.CloseIdleConnections()
	if c.Requests == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Duration)
		defer cancel()
	}
	pad := strings.Repeat("x", max(0, c.Size-60))
	var (
		issued atomic.Int64
		mu     sync.Mutex
		res    = &benchResult{byStatus: map[string]int{}}
		wg     sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < c.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			status := map[string]int{}
			for ctx.Err() == nil {
				n := issued.Add(1)
				if c.Requests > 0 && n > int64(c.Requests) {
					break
				}
				typ := webhook.EventTypes[int(n)%len(webhook.EventTypes)]
				body := webhook.Body(typ, fmt.Sprint(n), map[string]any{"padding": pad})
				t0 := time.Now()
				code := c.once(client, signer, body)
				lat = append(lat, time.Since(t0))
				status[code]++
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			for k, v := range status {
				res.byStatus[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, nil
}

// once sends one freshly signed webhook and returns its status code, or an
// error class for requests that got no answer.
func (c *benchCmd) once(client *fasthttp.Client, signer *webhook.Signer, body []byte) string {
	hdr, err := signer.Headers(webhook.NewMessageID(), time.Now(), body)
	if err != nil {
		return "sign_error"
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	for k, v := range hdr {
		req.Header.Set(k, v[0])
	}
	req.SetBodyRaw(body)
	if err := client.DoTimeout(req, resp, c.Timeout); err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) {
			return "timeout"
		}
		return "transport_error"
	}
	return strconv.Itoa(resp.StatusCode())
}

func (r *benchResult) print() {
	n := len(r.latencies)
	if n == 0 {
		fmt.Println("no requests completed")
		return
	}
	slices.Sort(r.latencies)
	pct := func(p float64) time.Duration { return r.latencies[min(n-1, int(float64(n)*p))] }
	fmt.Printf("requests:   %d in %s\n", n, r.elapsed.Round(time.Millisecond))
	fmt.Printf("rate:       %.0f req/s\n", float64(n)/r.elapsed.Seconds())
	fmt.Printf("latency:    p50 %s  p90 %s  p99 %s  max %s\n",
		pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), r.latencies[n-1].Round(time.Microsecond))
	codes := make([]string, 0, len(r.byStatus))
	for k := range r.byStatus {
		codes = append(codes, k)
	}
	slices.Sort(codes)
	fmt.Print("status:    ")
	for _, k := range codes {
		fmt.Printf(" %s=%d", k, r.byStatus[k])
	}
	fmt.Println()
}
