package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Request outcomes, the values of the "outcome" label.
const (
	outcomeAccepted    = "accepted"
	outcomeDuplicate   = "duplicate"
	outcomeUnrouted    = "unrouted"
	outcomeUnauthorize = "unauthorized"
	outcomeTooLarge    = "too_large"
	outcomeUnavailable = "unavailable"
	outcomeRateLimited = "rate_limited"
	// outcomeRefusedTooOften: a client address over REFUSED_RATE_LIMIT.
	outcomeRefusedTooOften = "refused_too_often"
	// outcomeBusy: HTTP_MAX_INFLIGHT_BYTES in use; 503.
	outcomeBusy = "busy"
	// outcomeStreamFull: the stream at NATS_STREAM_MAX_BYTES; 503.
	outcomeStreamFull = "stream_full"
	outcomeNotFound   = "not_found"
	outcomeError      = "error"
)

// Metrics are the gateway's Prometheus collectors.
type Metrics struct {
	requests      *prometheus.CounterVec
	verifyFailure *prometheus.CounterVec
	publish       prometheus.Histogram
	inflight      prometheus.Gauge
	lastStored    *prometheus.GaugeVec
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_gateway_requests_total",
			Help: "Webhook requests by outcome: accepted, duplicate, unrouted (stored on spectora.unrouted.unknown), unauthorized, too_large (413, can never be stored), unavailable, stream_full, busy (503s), rate_limited, refused_too_often (429s), not_found, error.",
		}, []string{"outcome", "source"}),
		verifyFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_gateway_verification_failures_total",
			Help: "Webhooks refused with 401, by reason (missing_signature_headers, malformed_signature_headers, timestamp_too_old, timestamp_too_new, invalid_signature).",
		}, []string{"reason"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spectora_gateway_publish_duration_seconds",
			Help:    "Time from publishing a webhook to JetStream until its PubAck (or failure).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spectora_gateway_inflight_requests",
			Help: "Webhook requests currently waiting for verification or a PubAck.",
		}),
		lastStored: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spectora_gateway_last_stored_timestamp_seconds",
			Help: "Unix time of the last verified webhook this process answered 200 for (stored, a duplicate or unrouted), by source; absent until the first. Alert on silence: time() - max by (source) (max_over_time(this[7d])).",
		}, []string{"source"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.verifyFailure, m.publish, m.inflight, m.lastStored} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// The methods below record nothing on a nil *Metrics (metrics off).

func (m *Metrics) inflightAdd(d float64) {
	if m != nil {
		m.inflight.Add(d)
	}
}

func (m *Metrics) request(outcome, source string) {
	if m != nil {
		m.requests.WithLabelValues(outcome, source).Inc()
	}
}

func (m *Metrics) stored(source string) {
	if m != nil {
		m.lastStored.WithLabelValues(source).SetToCurrentTime()
	}
}

func (m *Metrics) verifyFailed(reason string) {
	if m != nil {
		m.verifyFailure.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) published(took time.Duration) {
	if m != nil {
		m.publish.Observe(took.Seconds())
	}
}
