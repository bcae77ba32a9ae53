package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spectora-stream/spectora-stream/internal/telemetry/otlp"
	"github.com/spectora-stream/spectora-stream/reconcile"
)

type reconcileCmd struct {
	clientFlags `embed:""`
	apiFlags    `embed:""`
	Reconcile   reconcileFlags `embed:""`
	Replicas    int            `name:"nats-stream-replicas" env:"NATS_STREAM_REPLICAS" default:"1" help:"Replicas of the version and checkpoint buckets when they don't exist yet and this run creates them; existing buckets are used as they are (${env})."`

	Since     string   `name:"since" placeholder:"DURATION|TIME" help:"Read changes made since this long ago (72h) or since this RFC 3339 time, instead of each checkpoint."`
	Sources   []string `name:"source" placeholder:"NAME" help:"Only this source (repeatable, or comma-separated); default every source with an API key."`
	Resources []string `name:"resource" placeholder:"NAME" help:"Only this resource: inspection, agent or client (repeatable, or comma-separated)."`
	DryRun    bool     `name:"dry-run" help:"Print what would be published; publish nothing, move no checkpoint."`
}

// Run reconciles once and prints what it did.
func (c *reconcileCmd) Run(ctx context.Context, log *slog.Logger) error {
	if err := c.Reconcile.validate(); err != nil {
		return usageError{err}
	}
	if c.APIToken == "" && c.APISources == "" {
		return usageError{errors.New("SPECTORA_API_TOKEN and SPECTORA_API_SOURCES are unset: the reconciler needs an API key")}
	}
	if err := c.validate(); err != nil {
		return usageError{err}
	}
	opts := reconcile.Options{DryRun: c.DryRun, Out: os.Stdout, Sources: splitAll(c.Sources), Resources: splitAll(c.Resources)}
	if c.Since != "" {
		since, err := parseSince(c.Since, time.Now())
		if err != nil {
			return usageError{err}
		}
		opts.Since = since
	}
	tel, err := otlp.Setup(ctx, "spectora-reconcile", buildVersion())
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	clients, err := apiClients(c.apiFlags, prometheus.NewRegistry(), tel, log)
	if err != nil {
		return usageError{err}
	}
	conn, js, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rc, err := newReconciler(ctx, js, nil, tel, c.Reconcile, c.Replicas, clients, false, log)
	if err != nil {
		return err
	}
	res, err := rc.Run(ctx, opts)
	verb := "reconcile"
	if c.DryRun {
		verb = "reconcile (dry run)"
	}
	fmt.Printf("%s: %s\n", verb, res)
	return err
}

// parseSince reads --since: a duration back from now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--since %s: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration such as 72h or an RFC 3339 time such as 2026-11-20T00:00:00Z", s)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("--since %s is in the future", s)
	}
	return t, nil
}

// splitAll splits every comma-separated value of a repeatable flag.
func splitAll(values []string) []string {
	var out []string
	for _, v := range values {
		out = append(out, splitList(strings.ToLower(v))...)
	}
	return out
}
