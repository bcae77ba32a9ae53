package spectora

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API client's Prometheus collectors, shared by every client
// of a process.
type Metrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_api_requests_total",
			Help: "HTTP requests to Spectora's API by resource and status code (or 'error' without a response).",
		}, []string{"resource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spectora_api_request_duration_seconds",
			Help:    "Spectora API request latency.",
			Buckets: prometheus.DefBuckets,
		}, []string{"resource"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe records one request; a nil *Metrics records nothing.
func (m *Metrics) observe(resource string, resp *http.Response, took time.Duration) {
	if m == nil {
		return
	}
	m.latency.WithLabelValues(resource).Observe(took.Seconds())
	code := "error"
	if resp != nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	m.calls.WithLabelValues(resource, code).Inc()
}
