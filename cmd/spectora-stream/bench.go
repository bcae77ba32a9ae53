package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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
	Mode        string        `name:"mode" default:"genuine" enum:"genuine,flood,slow-unsigned,slow-forged" help:"What to send: genuine (signed, unique IDs), flood (unsigned posts as fast as possible), slow-unsigned (1,000,000 bytes announced, the default HTTP_BODY_LIMIT; no signature headers, 900 KB sent then 1 byte/s), slow-forged (the same with signature headers that could be genuine)."`
	Concurrency int           `name:"concurrency" short:"c" default:"64" help:"Requests in flight at once."`
	Duration    time.Duration `name:"duration" short:"d" default:"10s" help:"How long to run (ignored when --requests is set)."`
	Requests    int           `name:"requests" short:"n" default:"0" help:"Send exactly this many requests, each built and signed before the clock starts."`
	Records     int           `name:"records" default:"0" help:"Spread the events over this many distinct record IDs (1…N), as a drain test wants; 0: a new record per event."`
	Size        int           `name:"size" default:"512" help:"Approximate body size in bytes (Spectora's thin payloads are small)."`
	Timeout     time.Duration `name:"timeout" default:"15s" help:"Per-request timeout, like Svix's."`
	Rate        float64       `name:"rate" default:"0" help:"With --enriched-from: webhooks per second, sent at a fixed pace for --duration."`
	Enriched    string        `name:"enriched-from" placeholder:"NATS_URL" help:"Measure end to end: subscribe to spectora.enriched.*.* on this NATS server and time each webhook from its POST to its enriched event's delivery (needs --rate)."`
}

// benchResult is what one bench run measured.
type benchResult struct {
	elapsed   time.Duration
	cpu       time.Duration // this process's CPU time while the requests ran
	latencies []time.Duration
	byStatus  map[string]int
}

func (c *benchCmd) Run(ctx context.Context, _ *slog.Logger) error {
	if c.Concurrency < 1 {
		return usageError{fmt.Errorf("--concurrency %d: want at least 1", c.Concurrency)}
	}
	if c.Records < 0 {
		return usageError{fmt.Errorf("--records %d: must not be negative", c.Records)}
	}
	if c.Requests < 0 || (c.Requests == 0 && c.Duration <= 0) {
		return usageError{fmt.Errorf("--requests or a positive --duration is needed")}
	}
	if c.Mode == "slow-unsigned" || c.Mode == "slow-forged" {
		return c.slow(ctx)
	}
	if c.Enriched != "" || c.Rate != 0 {
		return c.endToEnd(ctx)
	}
	var signer *webhook.Signer
	if c.Mode == "genuine" {
		var err error
		if signer, err = webhook.NewSigner(c.Secret); err != nil {
			return usageError{fmt.Errorf("SPECTORA_WEBHOOK_SECRET: %w", err)}
		}
	}
	fmt.Printf("bench: %s POST %s, concurrency %d, ", c.Mode, c.URL, c.Concurrency)
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
	build := func(n int64) prepared {
		record := n
		if c.Records > 0 {
			record = (n-1)%int64(c.Records) + 1
		}
		// The type follows the record, so a record is always one resource.
		typ := webhook.EventTypes[int(record)%len(webhook.EventTypes)]
		p := prepared{body: webhook.Body(typ, strconv.FormatInt(record, 10), map[string]any{"padding": pad})}
		if signer != nil {
			hdr, err := signer.Headers(webhook.NewMessageID(), time.Now(), p.body)
			if err == nil {
				for k, v := range hdr {
					p.headers = append(p.headers, [2]string{k, v[0]})
				}
			}
		}
		return p
	}
	// With --requests, every request is built and signed before the clock
	// starts, so the load generator's HMAC doesn't take CPU from the
	// gateway on a shared machine (the timestamps stay well within Svix's
	// five minutes for any run this tool makes).
	var ready []prepared
	if c.Requests > 0 {
		ready = make([]prepared, c.Requests)
		for i := range ready {
			ready[i] = build(int64(i + 1))
		}
	}
	var (
		issued atomic.Int64
		mu     sync.Mutex
		res    = &benchResult{byStatus: map[string]int{}}
		wg     sync.WaitGroup
	)
	start, cpu0 := time.Now(), processCPU()
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
				var p prepared
				if ready != nil {
					p = ready[n-1]
				} else {
					p = build(n)
				}
				t0 := time.Now()
				code := c.once(client, p)
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
	res.elapsed, res.cpu = time.Since(start), processCPU()-cpu0
	return res, nil
}

// prepared is one request's body and signature headers (none when unsigned).
type prepared struct {
	body    []byte
	headers [][2]string
}

// once sends one webhook and returns its status code, or an error class for
// requests that got no answer.
func (c *benchCmd) once(client *fasthttp.Client, p prepared) string {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	for _, h := range p.headers {
		req.Header.Set(h[0], h[1])
	}
	req.SetBodyRaw(p.body)
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
	pct := func(p float64) time.Duration { return r.latencies[rank(n, p)] }
	fmt.Printf("requests:   %d in %s\n", n, r.elapsed.Round(time.Millisecond))
	fmt.Printf("rate:       %.0f req/s\n", float64(n)/r.elapsed.Seconds())
	fmt.Printf("latency:    p50 %s  p90 %s  p99 %s  max %s\n",
		pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), r.latencies[n-1].Round(time.Microsecond))
	if r.cpu > 0 {
		fmt.Printf("cpu:        %.1f µs per request (this load generator)\n", float64(r.cpu.Microseconds())/float64(n))
	}
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

// slow holds --concurrency connections that announce a 1 MiB body, send
// 900 KB of it and then a byte a second, reconnecting whenever the gateway
// closes one, for --duration; it prints how the gateway answered. This is
// the memory attack of the hardening review: run it against a gateway and
// watch the gateway's memory.
func (c *benchCmd) slow(ctx context.Context) error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return usageError{fmt.Errorf("SPECTORA_GATEWAY_URL %q: want an http URL", c.URL)}
	}
	ctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	fmt.Printf("bench: %s POST %s, %d connections, for %s\n", c.Mode, c.URL, c.Concurrency, c.Duration)
	var (
		mu       sync.Mutex
		answers  = map[string]int{}
		attempts atomic.Int64
		wg       sync.WaitGroup
	)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for range c.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				attempts.Add(1)
				got := c.slowOnce(ctx, u, chunk)
				mu.Lock()
				answers[got]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	keys := make([]string, 0, len(answers))
	for k := range answers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Printf("connections opened: %d\nanswers:", attempts.Load())
	for _, k := range keys {
		fmt.Printf(" %s=%d", k, answers[k])
	}
	fmt.Println()
	return nil
}

// slowOnce runs one slow request and returns how it ended: the status code,
// "closed" (the gateway closed it without an answer) or "held" (still open
// when the run ended).
func (c *benchCmd) slowOnce(ctx context.Context, u *url.URL, chunk []byte) string {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return "dial_error"
	}
	defer func() { _ = conn.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", u.RequestURI(), u.Host, 1_000_000)
	if c.Mode == "slow-forged" {
		head += fmt.Sprintf("svix-id: %s\r\nsvix-timestamp: %d\r\nsvix-signature: v1,%s\r\n",
			webhook.NewMessageID(), time.Now().Unix(), strings.Repeat("A", 43)+"=")
	}
	answer := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answer <- "closed"
			return
		}
		_ = resp.Body.Close()
		answer <- strconv.Itoa(resp.StatusCode)
	}()
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		return "closed"
	}
	for sent := 0; sent < 900<<10; sent += len(chunk) {
		if _, err := conn.Write(chunk); err != nil {
			return c.waitAnswer(ctx, answer)
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case a := <-answer:
			return a
		case <-ctx.Done():
			return "held"
		case <-tick.C:
			if _, err := conn.Write([]byte("x")); err != nil {
				return c.waitAnswer(ctx, answer)
			}
		}
	}
}

func (c *benchCmd) waitAnswer(ctx context.Context, answer <-chan string) string {
	select {
	case a := <-answer:
		return a
	case <-time.After(time.Second):
		return "closed"
	case <-ctx.Done():
		return "held"
	}
}
