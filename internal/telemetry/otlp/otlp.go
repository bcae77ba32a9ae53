// Package otlp sets up OpenTelemetry tracing for the commands from the
// standard OTEL_* environment, exporting spans over OTLP. It lives apart
// from package telemetry so the libraries never link the exporters.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/spectora-stream/spectora-stream/internal/telemetry"
)

// ErrConfig means an OTEL_* variable has a value this program can't use.
var ErrConfig = errors.New("invalid OpenTelemetry configuration")

// Telemetry is a process's tracer provider and propagator.
type Telemetry struct {
	// TracerProvider creates tracers; nil when nothing is exported, which
	// turns tracing off in every component (no spans, no cost).
	TracerProvider trace.TracerProvider
	// Propagator reads and writes W3C trace context and baggage.
	Propagator propagation.TextMapPropagator
	sdk        *sdktrace.TracerProvider
}

// Disabled is telemetry that records nothing.
func Disabled() *Telemetry {
	return &Telemetry{Propagator: telemetry.Propagator()}
}

// Setup configures tracing from the standard OpenTelemetry environment:
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (unset:
// nothing is exported and tracing costs nothing), OTEL_EXPORTER_OTLP_PROTOCOL
// ("http/protobuf", the default, or "grpc"), OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_SERVICE_NAME (default serviceName), OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, OTEL_TRACES_EXPORTER=none
// and OTEL_SDK_DISABLED=true.
func Setup(ctx context.Context, serviceName, version string) (*Telemetry, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return Disabled(), nil
	}
	if exp := os.Getenv("OTEL_TRACES_EXPORTER"); exp != "" && exp != "otlp" {
		return nil, fmt.Errorf("%w: OTEL_TRACES_EXPORTER %q: only otlp and none are supported", ErrConfig, exp)
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return Disabled(), nil
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp *otlptrace.Exporter
		err error
	)
	// The exporters read endpoint, headers, timeout and TLS from the
	// environment themselves.
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%w: OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", ErrConfig, protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: OTLP exporter: %v", ErrConfig, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("%w: resource: %v", ErrConfig, err)
	}
	// The sampler comes from OTEL_TRACES_SAMPLER (default parent-based always-on).
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Telemetry{TracerProvider: sdk, Propagator: telemetry.Propagator(), sdk: sdk}, nil
}

// Shutdown flushes buffered spans and stops the exporter.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}
