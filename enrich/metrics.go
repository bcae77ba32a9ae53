package enrich

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the enricher's Prometheus collectors.
type Metrics struct {
	cache *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{cache: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spectora_record_cache_total",
		Help: "Record look-ups by result: memory (fresh record in this process's memory), hit (fresh record in the shared KV bucket), stale (cached before the event, refetched), miss, coalesced (joined a fetch already running in this process), carried (the reconciler sent the record with the event).",
	}, []string{"result"})}
	if err := reg.Register(m.cache); err != nil {
		return nil, err
	}
	return m, nil
}

// count records one look-up result; a nil *Metrics records nothing.
func (m *Metrics) count(result string) {
	if m != nil {
		m.cache.WithLabelValues(result).Inc()
	}
}
