package reconcile

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the reconciler's Prometheus collectors.
type Metrics struct {
	events      *prometheus.CounterVec
	listed      *prometheus.CounterVec
	runs        *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_reconciler_events_total",
			Help: "Events the reconciler stored because no webhook announced them, by source, resource and kind: reconciled (spectora.<resource>.reconciled) or rule (an event a rule derived). Any increase means webhooks were missed.",
		}, []string{"source", "resource", "kind"}),
		listed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_reconciler_records_listed_total",
			Help: "Records the reconciler read from Spectora's list endpoints.",
		}, []string{"source", "resource"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_reconciler_passes_total",
			Help: "Reconciliation passes over one source and resource, by result: ok or error.",
		}, []string{"source", "resource", "result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spectora_reconciler_last_success_timestamp_seconds",
			Help: "Unix time of the last reconciliation run in which every pass succeeded.",
		}),
	}
	for _, c := range []prometheus.Collector{m.events, m.listed, m.runs, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) emitted(source, resource, kind string) {
	if m != nil {
		m.events.WithLabelValues(source, resource, kind).Inc()
	}
}

func (m *Metrics) listedN(source, resource string, n int) {
	if m != nil {
		m.listed.WithLabelValues(source, resource).Add(float64(n))
	}
}

func (m *Metrics) pass(source, resource string, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.runs.WithLabelValues(source, resource, "error").Inc()
	} else {
		m.runs.WithLabelValues(source, resource, "ok").Inc()
	}
}

// init creates every series of a source and resource at 0, so the first
// increase after a start is seen by increase() and the alerts.
func (m *Metrics) init(source, resource string) {
	if m == nil {
		return
	}
	for _, kind := range []string{"reconciled", "rule"} {
		m.events.WithLabelValues(source, resource, kind)
	}
	m.listed.WithLabelValues(source, resource)
	for _, result := range []string{"ok", "error"} {
		m.runs.WithLabelValues(source, resource, result)
	}
}

func (m *Metrics) succeeded(at time.Time) {
	if m != nil {
		m.lastSuccess.Set(float64(at.UnixNano()) / 1e9)
	}
}
