package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/webhook"
)

type sendCmd struct {
	targetFlags `embed:""`
	Type        string        `name:"type" default:"inspection.confirmed" help:"Event type."`
	ID          string        `name:"id" default:"42" help:"Record ID (sent as a JSON number when numeric)."`
	Body        string        `name:"body" help:"Send this exact body instead of building one from --type and --id."`
	MsgID       string        `name:"msg-id" help:"svix-id to use; default a fresh one. Repeat an ID to see deduplication."`
	Skew        time.Duration `name:"skew" default:"0s" help:"Shift the signed timestamp, e.g. -10m to see a stale webhook refused."`
	Timeout     time.Duration `name:"timeout" default:"15s" help:"HTTP timeout, like Svix's."`
	Verbose     bool          `name:"verbose" short:"v" help:"Also print the request (URL, svix-id, body) on stderr."`
}

func (c *sendCmd) Run(ctx context.Context, _ *slog.Logger) error {
	signer, err := webhook.NewSigner(c.Secret)
	if err != nil {
		return usageError{fmt.Errorf("SPECTORA_WEBHOOK_SECRET: %w", err)}
	}
	body := []byte(c.Body)
	if c.Body == "" {
		body = webhook.Body(c.Type, c.ID, nil)
	}
	msgID := c.MsgID
	if msgID == "" {
		msgID = webhook.NewMessageID()
	}
	hdr, err := signer.Headers(msgID, time.Now().Add(c.Skew), body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return usageError{fmt.Errorf("SPECTORA_GATEWAY_URL %q: %w", c.URL, err)}
	}
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", c.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if c.Verbose {
		fmt.Fprintf(os.Stderr, "POST %s\nsvix-id: %s\nbody: %s\n", c.URL, msgID, body)
	}
	fmt.Printf("%s %s\n", resp.Status, bytes.TrimSpace(out))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return exitCode{code: exitNon2xx, err: fmt.Errorf("gateway answered %s", resp.Status)}
	}
	return nil
}
