// Command crmsync is a complete consumer group of a made-up CRM sync: it
// reads confirmed inspections from NATS_URL (default nats://127.0.0.1:4222,
// the embedded server of `spectora-stream serve`) and "pushes" each to the
// CRM by printing it. Run it next to serve: go run ./examples/crmsync
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/consumers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(os.Getenv("NATS_URL"), nats.UserInfo(os.Getenv("NATS_USER"), os.Getenv("NATS_PASSWORD")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crmsync:", err)
		os.Exit(1)
	}
	defer func() { _ = nc.Drain() }()
	js, _ := jetstream.New(nc)
	if err := run(ctx, js, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "crmsync:", err)
		os.Exit(1)
	}
}

// run is the whole group: which events, what to do with each, and Run.
func run(ctx context.Context, js jetstream.JetStream, crm io.Writer) error {
	group, err := consumers.NewGroup(consumers.Config{
		Name:     "crm-sync",
		Subjects: []string{"spectora.inspection.confirmed"},
		Handler: func(ctx context.Context, m *consumers.Message) error {
			if m.Event.GetRecordId() == "" {
				return consumers.Permanent(errors.New("event without a record ID")) // dead-letter now
			}
			_, err := fmt.Fprintf(crm, "inspection %s confirmed (svix-id %s)\n", m.Event.GetRecordId(), m.Event.GetId())
			return err // nil: ack; an error: retried with backoff, then dead-lettered
		},
		Logger: slog.Default(),
	}, js)
	if err != nil {
		return err
	}
	return group.Run(ctx) // blocks; on Ctrl-C, in-flight events finish or go back
}
