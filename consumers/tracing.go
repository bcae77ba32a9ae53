package consumers

import (
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/spectora-stream/spectora-stream/internal/telemetry"
)

// Tracing says how groups, the enricher and the API client trace. The zero
// value records nothing and still propagates W3C trace context.
type Tracing struct {
	// Provider creates tracers; nil means no-op.
	Provider trace.TracerProvider
	// Propagator reads and writes trace context in NATS headers and HTTP
	// requests; nil means W3C trace context and baggage.
	Propagator propagation.TextMapPropagator
}

func (t Tracing) tracer() trace.Tracer {
	if t.Provider == nil {
		return noop.NewTracerProvider().Tracer(telemetry.ScopeName)
	}
	return t.Provider.Tracer(telemetry.ScopeName)
}

func (t Tracing) provider() trace.TracerProvider {
	if t.Provider == nil {
		return noop.NewTracerProvider()
	}
	return t.Provider
}

func (t Tracing) propagator() propagation.TextMapPropagator {
	if t.Propagator == nil {
		return telemetry.Propagator()
	}
	return t.Propagator
}
