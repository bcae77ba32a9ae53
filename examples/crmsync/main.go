// Command crmsync is a complete consumer group of a made-up CRM sync: it
// reads confirmed inspections from NATS_URL (default nats://127.0.0.1:4222,
// the embedded server of `spectora-stream serve`, which wants the seed file
// NATS_NKEY) and "pushes" each to the CRM by printing it. Next to serve:
//
//	NATS_NKEY=data/nats/users/admin.nk go run ./examples/crmsync
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
	var opts []nats.Option
	if seed := os.Getenv("NATS_NKEY"); seed != "" {
		opt, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			fmt.Fprintln(os.Stderr, "crmsync: NATS_NKEY:", err)
			os.Exit(1)
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"), opts...)
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
