package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of this module's tracers.
const ScopeName = "github.com/spectora-stream/spectora-stream"

// Attribute keys of our own, next to the messaging semantic conventions.
const (
	AttrStreamSequence = attribute.Key("messaging.nats.stream.sequence")
	AttrStream         = attribute.Key("messaging.nats.stream")
	AttrDeliveryCount  = attribute.Key("messaging.nats.delivery_count")
	AttrEventType      = attribute.Key("spectora.event.type")
	AttrRecordID       = attribute.Key("spectora.record.id")
	AttrSource         = attribute.Key("spectora.source")
	AttrSvixID         = attribute.Key("svix.message.id")
)

// systemNATS is messaging.system for NATS (not an enumerated value in semconv).
var systemNATS = semconv.MessagingSystemKey.String("nats")

// StartPublish starts a PRODUCER span "send <subject>" and writes its context
// into msg's headers, so the consumer's span continues the trace.
func StartPublish(ctx context.Context, tracer trace.Tracer, prop propagation.TextMapPropagator, msg *nats.Msg, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx, span := tracer.Start(ctx, "send "+msg.Subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(systemNATS,
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(msg.Subject),
			semconv.MessagingMessageBodySize(len(msg.Data))),
		trace.WithAttributes(attrs...))
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	prop.Inject(ctx, HeaderCarrier(msg.Header))
	return ctx, span
}

// StartProcess starts a CONSUMER span "process <subject>" for one delivery:
// a child of the context the producer put in the headers, with a link to it
// as well (the messaging conventions ask for the link; the parent makes the
// whole flow one trace in Jaeger).
func StartProcess(ctx context.Context, tracer trace.Tracer, prop propagation.TextMapPropagator, subject string, header nats.Header, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := prop.Extract(ctx, HeaderCarrier(header))
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(systemNATS,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(subject)),
		trace.WithAttributes(attrs...),
	}
	if sc := trace.SpanContextFromContext(parent); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return tracer.Start(parent, "process "+subject, opts...)
}

// End records err on span (status Error) and ends it.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Propagator is the W3C trace context plus baggage propagator used everywhere.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
