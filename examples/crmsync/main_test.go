package main

import (
	"context"
	"strings"
	"testing"

	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/stream"
)

// The example, run as written against a real JetStream: it gets the
// confirmed inspections and nothing else, and dead-letters the broken one.
func TestExampleSyncsConfirmedInspections(t *testing.T) {
	_, js := natstest.JetStream(t, natstest.Server(t))
	natstest.Streams(t, js)
	natstest.Publish(t, js, "msg_1", "inspection.confirmed", "1001")
	natstest.Publish(t, js, "msg_2", "agent.updated", "7")
	natstest.Publish(t, js, "msg_3", "inspection.confirmed", "")
	last := natstest.Publish(t, js, "msg_4", "inspection.confirmed", "1002")
	var crm natstest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, js, &crm) }()
	natstest.WaitDone(t, js, stream.Raw, "crm-sync", last)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "inspection 1001 confirmed (svix-id msg_1)\ninspection 1002 confirmed (svix-id msg_4)\n"
	if got := crm.String(); got != want && got != strings.Join([]string{strings.Split(want, "\n")[1], strings.Split(want, "\n")[0], ""}, "\n") {
		t.Fatalf("CRM got:\n%s\nwant:\n%s", got, want)
	}
	if info := natstest.StreamInfo(t, js, stream.DLQ); info.State.Msgs != 1 {
		t.Fatalf("%d dead letters, want 1 (the event without a record ID)", info.State.Msgs)
	}
}
