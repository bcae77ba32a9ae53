package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/sim"
)

type simCmd struct {
	APIAddr      string        `name:"sim-api-addr" env:"SIM_API_ADDR" default:"127.0.0.1:8090" help:"Where the fake Spectora API listens, or 'off' (${env})."`
	APIToken     string        `name:"spectora-api-token" env:"SPECTORA_API_TOKEN" default:"sim-token" help:"Bearer token the fake API accepts; give consumers the same (${env})."`
	APILatency   time.Duration `name:"sim-api-latency" env:"SIM_API_LATENCY" default:"20ms" help:"Latency added to every API answer; 0: none (${env})."`
	APIErrorRate float64       `name:"sim-api-error-rate" env:"SIM_API_ERROR_RATE" default:"0" help:"Share of API requests answered 500, 0 to 1 (${env})."`
	API429Rate   float64       `name:"sim-api-429-rate" env:"SIM_API_429_RATE" default:"0" help:"Share of API requests answered 429 with Retry-After 1 (${env})."`
	Strict       bool          `name:"sim-strict" env:"SIM_STRICT" help:"Answer 404 for records the simulator did not create (${env})."`

	targetFlags `embed:""`
	Rate        float64       `name:"sim-rate" env:"SIM_RATE" default:"2" help:"Events per second; 0 runs the fake API only (${env})."`
	Count       int           `name:"sim-count" env:"SIM_COUNT" default:"0" help:"Stop sending after this many events (the fake API keeps serving until Ctrl-C); 0: until --sim-duration or Ctrl-C (${env})."`
	Duration    time.Duration `name:"sim-duration" env:"SIM_DURATION" default:"0s" help:"Stop sending after this long; 0: no limit (${env})."`
	TimeScale   float64       `name:"sim-time-scale" env:"SIM_TIME_SCALE" default:"1" help:"Multiplies Svix's retry delays (5s, 5m, 30m, 2h, 5h, 10h, 10h); 0.001 makes 5 minutes 300 ms (${env})."`
	BlackoutAt  time.Duration `name:"sim-blackout-after" env:"SIM_BLACKOUT_AFTER" default:"0s" help:"Start of a blackout, this long after the start (${env})."`
	BlackoutFor time.Duration `name:"sim-blackout-for" env:"SIM_BLACKOUT_FOR" default:"0s" help:"A blackout this long: records keep changing, no webhook is sent, as in an outage Svix gave up on; 0: none (${env})."`
	Quick       bool          `name:"sim-quick-publish" env:"SIM_QUICK_PUBLISH" help:"Publish inspections like Spectora's quick publish: the record changes, no inspection.published is sent (${env})."`
}

func (c *simCmd) Run(ctx context.Context, log *slog.Logger) error {
	switch {
	case c.Rate < 0:
		return usageError{fmt.Errorf("SIM_RATE %g: want at least 0 (events per second; 0 runs the fake API alone)", c.Rate)}
	case c.APIErrorRate < 0 || c.APIErrorRate > 1:
		return usageError{fmt.Errorf("SIM_API_ERROR_RATE %g: want 0 to 1", c.APIErrorRate)}
	case c.API429Rate < 0 || c.API429Rate > 1:
		return usageError{fmt.Errorf("SIM_API_429_RATE %g: want 0 to 1", c.API429Rate)}
	case c.Count < 0:
		return usageError{fmt.Errorf("SIM_COUNT %d: must not be negative (0: no limit)", c.Count)}
	case c.Duration < 0:
		return usageError{fmt.Errorf("SIM_DURATION %s: must not be negative (0: no limit)", c.Duration)}
	case c.TimeScale <= 0:
		return usageError{fmt.Errorf("SIM_TIME_SCALE %g: want more than 0", c.TimeScale)}
	case c.APILatency < 0:
		return usageError{fmt.Errorf("SIM_API_LATENCY %s: must not be negative", c.APILatency)}
	case c.BlackoutAt < 0 || c.BlackoutFor < 0:
		return usageError{fmt.Errorf("SIM_BLACKOUT_AFTER %s, SIM_BLACKOUT_FOR %s: must not be negative", c.BlackoutAt, c.BlackoutFor)}
	}
	store := sim.NewStore(1000)
	store.Strict = c.Strict
	var apiSrv *http.Server
	if c.APIAddr != "off" {
		if c.APIToken == "" {
			return usageError{errors.New("SPECTORA_API_TOKEN is empty: the fake API needs a token to accept")}
		}
		ln, err := net.Listen("tcp", c.APIAddr)
		if err != nil {
			return usageError{fmt.Errorf("SIM_API_ADDR %q: %w", c.APIAddr, err)}
		}
		api := sim.NewAPI(sim.APIConfig{Token: c.APIToken, Latency: c.APILatency, ErrorRate: c.APIErrorRate, RateLimitRate: c.API429Rate}, store)
		apiSrv = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = apiSrv.Serve(ln) }()
		log.Info("fake Spectora API listening; it accepts the Bearer token in SPECTORA_API_TOKEN", "url", "http://"+ln.Addr().String())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = apiSrv.Shutdown(sctx)
		}()
	}
	if c.Rate == 0 {
		<-ctx.Done()
		return nil
	}
	sender, err := sim.NewSender(sim.SenderConfig{URL: c.URL, Secret: c.Secret, Rate: c.Rate, Count: c.Count, Duration: c.Duration, TimeScale: c.TimeScale,
		BlackoutAfter: c.BlackoutAt, BlackoutFor: c.BlackoutFor}, log)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				log.Info("sim progress", "stats", sender.Stats.String())
			}
		}
	}()
	if c.BlackoutFor > 0 {
		log.Info("blackout planned: changes made in it send no webhook; `spectora-stream reconcile` recovers them",
			"after", c.BlackoutAt.String(), "for", c.BlackoutFor.String())
	}
	script := sim.NewScript(store)
	script.QuickPublish = c.Quick
	err = sender.Run(ctx, script)
	close(done)
	fmt.Printf("sim: %s\n", sender.Stats.String())
	if apiSrv == nil || ctx.Err() != nil {
		return err
	}
	// The consumers may still be fetching the records of the last events:
	// the fake API stays up until Ctrl-C.
	log.Info("done sending; the fake API keeps serving until Ctrl-C")
	<-ctx.Done()
	return err
}
