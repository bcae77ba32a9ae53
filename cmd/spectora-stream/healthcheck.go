package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// healthcheckCmd probes a running process (by default its ops address); the container image has no shell or
// curl, so its HEALTHCHECK runs the binary itself.
type healthcheckCmd struct {
	URL     string        `name:"url" default:"http://127.0.0.1:9090/readyz" help:"URL that must answer 200."`
	Timeout time.Duration `name:"timeout" default:"3s" help:"Request timeout."`
}

func (c *healthcheckCmd) Run(ctx context.Context, _ *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return usageError{fmt.Errorf("--url %q: %w", c.URL, err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", c.URL, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", c.URL, resp.Status)
	}
	return nil
}
