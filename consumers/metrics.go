package consumers

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the consumer runtime's and the enricher's Prometheus collectors,
// shared by every group of a process.
type Metrics struct {
	processed  *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	pending    *prometheus.GaugeVec
	ackPending *prometheus.GaugeVec
	apiCalls   *prometheus.CounterVec
	apiLatency *prometheus.HistogramVec
	cache      *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_consumer_messages_total",
			Help: "Messages handled by consumer groups, by outcome: ack, retry (nak with delay), dead_lettered (stored in SPECTORA_DLQ, then terminated), drained (handed back at shutdown).",
		}, []string{"group", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spectora_consumer_processing_seconds",
			Help:    "Handler time per delivery.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"group"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spectora_consumer_pending_messages",
			Help: "Messages in the stream not yet delivered to the group (consumer num_pending), sampled every 10 s.",
		}, []string{"group"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spectora_consumer_ack_pending_messages",
			Help: "Messages delivered to the group and not yet acknowledged, sampled every 10 s.",
		}, []string{"group"}),
		apiCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_api_requests_total",
			Help: "HTTP requests to Spectora's API by resource and status code (or 'error' without a response).",
		}, []string{"resource", "code"}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spectora_api_request_duration_seconds",
			Help:    "Spectora API request latency.",
			Buckets: prometheus.DefBuckets,
		}, []string{"resource"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_record_cache_total",
			Help: "Record look-ups by result: hit (fresh record in the shared KV bucket), stale (cached before the event, refetched), miss, coalesced (joined a fetch already running in this process).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.processed, m.duration, m.pending, m.ackPending, m.apiCalls, m.apiLatency, m.cache} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
