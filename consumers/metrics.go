package consumers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the consumer runtime's Prometheus collectors, shared by every
// group of a process.
type Metrics struct {
	processed  *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	pending    *prometheus.GaugeVec
	ackPending *prometheus.GaugeVec
	evicted    *prometheus.CounterVec
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
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spectora_consumer_evicted_total",
			Help: "Times the stream's limits (NATS_STREAM_MAX_AGE) removed events before the group processed them, by how: unacked (delivered, each counted) or undelivered (at least one each time). Alert on any increase.",
		}, []string{"group", "how"}),
	}
	for _, c := range []prometheus.Collector{m.processed, m.duration, m.pending, m.ackPending, m.evicted} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Middleware records each delivery's handler time and, once settled, its
// outcome. Groups run it when Config.Metrics is set.
func (mt *Metrics) Middleware() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			start := time.Now()
			err := next(ctx, m)
			mt.duration.WithLabelValues(m.Group).Observe(time.Since(start).Seconds())
			m.OnSettled(func(o Outcome) { mt.processed.WithLabelValues(m.Group, string(o)).Inc() })
			return err
		}
	}
}
