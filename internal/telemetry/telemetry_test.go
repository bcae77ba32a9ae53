package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestHeaderCarrierKeepsExactKeys(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	msg := nats.NewMsg("spectora.inspection.confirmed")
	ctx, span := StartPublish(context.Background(), tp.Tracer("t"), Propagator(), msg)
	span.End()
	if got := msg.Header["traceparent"]; len(got) != 1 || got[0] == "" {
		t.Fatalf("headers %v: want an exact-case traceparent", msg.Header)
	}
	if _, ok := msg.Header["Traceparent"]; ok {
		t.Fatal("canonicalised Traceparent written")
	}
	_, child := StartProcess(context.Background(), tp.Tracer("t"), Propagator(), msg.Subject, msg.Header)
	child.End()
	parent := trace.SpanContextFromContext(ctx)
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	p, c := spans[0], spans[1]
	if p.SpanKind() != trace.SpanKindProducer || c.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("kinds %v %v", p.SpanKind(), c.SpanKind())
	}
	if c.Parent().SpanID() != parent.SpanID() || c.SpanContext().TraceID() != parent.TraceID() {
		t.Fatal("consumer span is not the producer's child")
	}
	if len(c.Links()) != 1 || c.Links()[0].SpanContext.SpanID() != parent.SpanID() {
		t.Fatalf("links %v", c.Links())
	}
	if p.Name() != "send spectora.inspection.confirmed" || c.Name() != "process spectora.inspection.confirmed" {
		t.Fatalf("names %q %q", p.Name(), c.Name())
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "x")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	log.InfoContext(ctx, "inside")
	span.End()
	log.Info("outside")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	var in, out map[string]any
	_ = json.Unmarshal(lines[0], &in)
	_ = json.Unmarshal(lines[1], &out)
	if in["trace_id"] != span.SpanContext().TraceID().String() || in["span_id"] != span.SpanContext().SpanID().String() {
		t.Fatalf("inside span: %v", in)
	}
	if _, ok := out["trace_id"]; ok {
		t.Fatalf("outside span: %v", out)
	}
}
