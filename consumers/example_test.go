package consumers_test

import (
	"context"
	"errors"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spectora-stream/spectora-stream/consumers"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// A whole microservice that syncs confirmed inspections to a CRM: a consumer
// group named "crm-sync". Run several copies and they share the work; every
// other group still sees every event. Errors are retried with backoff, then
// dead-lettered; Permanent errors are dead-lettered at once.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	nc, _ := nats.Connect(nats.DefaultURL)
	defer nc.Drain()
	js, _ := jetstream.New(nc)
	metrics, _ := consumers.NewMetrics(prometheus.DefaultRegisterer)
	group, _ := consumers.NewGroup(consumers.Config{
		Name:     "crm-sync",
		Subjects: []string{"spectora.inspection.confirmed"},
		Handler: func(ctx context.Context, m *consumers.Message) error {
			if m.Event.GetRecordId() == "" {
				return consumers.Permanent(errors.New("event without record ID"))
			}
			return pushToCRM(ctx, m.Event)
		},
	}, js, metrics, slog.Default())
	if err := group.Start(ctx); err != nil {
		slog.Error("start", "err", err)
		return
	}
	<-ctx.Done()
	drain, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = group.Stop(drain)
}

func pushToCRM(context.Context, *spectorav1.WebhookEvent) error { return nil }
