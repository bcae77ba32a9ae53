package consumers_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spectora-stream/spectora-stream/consumers"
)

// A failing delivery's CONSUMER span records the error with status Error, and
// dead-lettering is a PRODUCER span under it.
func TestFailedDeliveryIsRecordedOnItsSpan(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e.start(t, consumers.Config{Name: "strict", TracerProvider: tp, Handler: func(context.Context, *consumers.Message) error {
		return consumers.Permanent(errors.New("bad record"))
	}})
	e.publish(t, "msg_span", "inspection.confirmed", "1")
	var process, dlq sdktrace.ReadOnlySpan
	eventually(t, "process and dead-letter spans", func() bool {
		for _, s := range rec.Ended() {
			switch s.Name() {
			case "process spectora.inspection.confirmed":
				process = s
			case "send spectora.dlq.strict.inspection.confirmed":
				dlq = s
			}
		}
		return process != nil && dlq != nil
	})
	if process.Status().Code != codes.Error || len(process.Events()) == 0 || process.Events()[0].Name != "exception" {
		t.Fatalf("process span status %v events %v: want the error recorded", process.Status(), process.Events())
	}
	if dlq.SpanKind() != trace.SpanKindProducer || dlq.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Fatalf("dead-letter span kind %v parent %v", dlq.SpanKind(), dlq.Parent())
	}
	found := false
	for _, kv := range process.Attributes() {
		found = found || (kv.Key == "spectora.consumer.outcome" && kv.Value.AsString() == "dead_lettered")
	}
	if !found {
		t.Fatalf("process span lacks outcome dead_lettered: %v", process.Attributes())
	}
}
