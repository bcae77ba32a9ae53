package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spectora-stream/spectora-stream/internal/apitest"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/telemetry/otlp"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// With SPECTORA_API_SOURCES, each company's records come from its own API
// with its own key, SPECTORA_API_TOKEN serves the default source only, and a
// source without a key is not fetched with anybody else's.
func TestEnricherFetchesWithEachSourcesOwnKey(t *testing.T) {
	t.Parallel()
	_, js := natstest.JetStream(t, natstest.Server(t))
	apis := map[string]*apitest.API{}
	for _, source := range []string{"default", "acme", "beta"} {
		apis[source] = apitest.New(t)
		apis[source].Key = source + "-key"
	}
	cf := consumerFlags{apiFlags: testAPIFlags(apis["default"].URL, "default-key"), Reconcile: testReconcileFlags(), CacheTTL: time.Hour}
	cf.APISources = "acme=acme-key " + apis["acme"].URL + "; beta=beta-key " + apis["beta"].URL
	reg, log := prometheus.NewRegistry(), slog.New(slog.DiscardHandler)
	clients, err := apiClients(cf.apiFlags, reg, &otlp.Telemetry{}, log)
	if err != nil {
		t.Fatal(err)
	}
	enr, err := newEnricher(context.Background(), js, reg, &otlp.Telemetry{}, cf, 1, clients, log)
	if err != nil {
		t.Fatal(err)
	}
	received := timestamppb.New(time.Now())
	for _, source := range []string{"default", "acme", "beta", "gamma"} {
		ev := &spectorav1.WebhookEvent{Source: source, Resource: "inspection", Action: "confirmed", RecordId: "1", ReceivedAt: received}
		rec, err := enr.Record(context.Background(), ev)
		if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		switch {
		case source == "gamma" && rec.Status != spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED:
			t.Fatalf("gamma has no key but its record was fetched: %+v", rec)
		case source != "gamma" && (rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND || !strings.Contains(string(rec.Body), `"company":"`+source+`-key"`)):
			t.Fatalf("%s's inspection 1: %+v %s", source, rec, rec.Body)
		}
	}
	for source, api := range apis {
		if n := api.Calls.Load(); n != 1 {
			t.Errorf("%s's API called %d times, want 1", source, n)
		}
	}
}
