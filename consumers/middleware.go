package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Middleware wraps a Handler with behaviour of its own: idempotency, logging,
// a timeout. It returns errors like a handler; the runtime still decides what
// an error means.
type Middleware func(Handler) Handler

// Chain composes middlewares, the first outermost.
func Chain(mws ...Middleware) Middleware {
	return func(h Handler) Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i](h)
		}
		return h
	}
}

// Recover turns a panic in the handler into an error wrapping ErrPanic,
// retried like any other, and logs the stack. Every group runs it.
func Recover(logger *slog.Logger) Middleware {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			defer func() {
				if r := recover(); r != nil {
					logger.ErrorContext(ctx, "handler panicked", "seq", m.Sequence, "panic", r, "stack", string(debug.Stack()))
					err = fmt.Errorf("%w: %v", ErrPanic, r)
				}
			}()
			return next(ctx, m)
		}
	}
}

// Timeout bounds one handler call: its context is cancelled after d, and an
// error it then returns is retried like any other. A handler that ignores
// its context is not stopped; heartbeats keep its message meanwhile.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			err := next(ctx, m)
			if err != nil && ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("handler timed out after %s: %w", d, err)
			}
			return err
		}
	}
}

// attrOutcome is what the runtime did with the delivery.
var attrOutcome = attribute.Key("spectora.consumer.outcome")

// Tracing traces each delivery as a CONSUMER span "process <subject>": a
// child of the producer's span (read from the message headers) and linked to
// it. The span stays open while the runtime settles the delivery, so a dead
// letter's publish is its child, and records the outcome. Groups run it when
// Config.TracerProvider is set.
func Tracing(tp trace.TracerProvider, prop propagation.TextMapPropagator) Middleware {
	tracer := tp.Tracer(telemetry.ScopeName)
	if prop == nil {
		prop = telemetry.Propagator()
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			ctx, span := telemetry.StartProcess(ctx, tracer, prop, m.raw.Subject(), m.Header, spanAttrs(m)...)
			m.settleCtx = trace.ContextWithSpan(m.settleCtx, span)
			err := next(ctx, m)
			m.OnSettled(func(o Outcome) {
				span.SetAttributes(attrOutcome.String(string(o)))
				telemetry.End(span, err)
			})
			return err
		}
	}
}

// spanAttrs describe one delivery on its CONSUMER span.
func spanAttrs(m *Message) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.MessagingConsumerGroupName(m.Group),
		telemetry.AttrStream.String(m.Stream),
		telemetry.AttrStreamSequence.Int64(int64(m.Sequence)),
		telemetry.AttrDeliveryCount.Int64(int64(m.Delivered))}
	if id := m.Header.Get(stream.HeaderMsgID); id != "" {
		attrs = append(attrs, semconv.MessagingMessageID(id))
	}
	if ev := m.Event; ev != nil {
		attrs = append(attrs, telemetry.AttrSvixID.String(ev.GetId()), telemetry.AttrEventType.String(ev.GetType()),
			telemetry.AttrRecordID.String(ev.GetRecordId()))
	}
	return attrs
}
