// Package telemetry carries OpenTelemetry trace context through NATS headers
// and starts the messaging spans, so one webhook is one trace from the
// gateway's HTTP request to the last consumer group. Exporter set-up is in
// package otlp, which only the command links.
package telemetry

import (
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// HeaderCarrier adapts NATS headers to OpenTelemetry propagation. NATS headers
// are case-sensitive, so keys are kept exactly as the propagator writes them
// ("traceparent", "tracestate", "baggage"), unlike propagation.HeaderCarrier,
// which would canonicalise them to "Traceparent" and hide them from
// exact-case readers in other languages.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier{}

// Get returns the first value of key, looked up exactly.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
