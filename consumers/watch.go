package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Why the server terminates a delivery when the stream's limits removed it
// (nats-server's ackTermLimitsReason and ackTermUnackedLimitsReason).
var limitsReasons = map[string]bool{
	"Message deleted by stream limits":   true,
	"Unacknowledged message was deleted": true,
}

// terminatedAdvisory is the part of JetStream's MSG_TERMINATED advisory read.
type terminatedAdvisory struct {
	StreamSeq uint64 `json:"stream_seq"`
	Reason    string `json:"reason"`
}

// watchTerminations reports deliveries of this group that the stream's
// limits removed before they were acknowledged: the server terminates them
// with an advisory. Every instance of the group hears it.
func (r *run) watchTerminations() (*nats.Subscription, error) {
	g := r.g
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + g.cfg.Stream + "." + g.cfg.Name
	return g.js.Conn().Subscribe(subject, func(m *nats.Msg) {
		var a terminatedAdvisory
		if json.Unmarshal(m.Data, &a) != nil || !limitsReasons[a.Reason] {
			return
		}
		r.evicted("unacked", a.StreamSeq, a.StreamSeq)
	})
}

// evicted records events removed by the stream's limits before the group
// processed them: seq from..to, at least one.
func (r *run) evicted(how string, from, to uint64) {
	g := r.g
	g.log.Error("events removed by the stream's limits before this group processed them: raise NATS_STREAM_MAX_AGE or keep the group up; the reconciler or a replay from Spectora's API may recover them",
		"stream", g.cfg.Stream, "how", how, "first_seq", from, "last_seq", to)
	if g.cfg.Metrics != nil {
		g.cfg.Metrics.evicted.WithLabelValues(g.cfg.Name, how).Inc()
	}
}

// watch samples the consumer every WatchInterval until quit closes: the
// pending gauges, and undelivered events the stream's limits removed. It
// remembers the first event not yet delivered to the group; if that event
// is gone from the stream at the next sample and was still never
// delivered, the limits took it.
func (r *run) watch(cons jetstream.Consumer, quit <-chan struct{}) {
	g := r.g
	t := time.NewTicker(g.cfg.WatchInterval)
	defer t.Stop()
	var waiting uint64 // first undelivered event at the last sample, or 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		waiting = r.sample(ctx, cons, waiting)
		cancel()
		select {
		case <-quit:
			return
		case <-t.C:
		}
	}
}

func (r *run) sample(ctx context.Context, cons jetstream.Consumer, waiting uint64) uint64 {
	g := r.g
	info, err := cons.Info(ctx)
	if err != nil {
		return waiting
	}
	if mt := g.cfg.Metrics; mt != nil {
		mt.pending.WithLabelValues(g.cfg.Name).Set(float64(info.NumPending))
		mt.ackPending.WithLabelValues(g.cfg.Name).Set(float64(info.NumAckPending))
	}
	s, err := g.js.Stream(ctx, g.cfg.Stream)
	if err != nil {
		return waiting
	}
	si, err := s.Info(ctx)
	if err != nil {
		return waiting
	}
	if waiting != 0 && waiting < si.State.FirstSeq && info.Delivered.Stream < waiting {
		r.evicted("undelivered", waiting, si.State.FirstSeq-1)
	}
	if info.NumPending == 0 {
		return 0
	}
	// The first event after the last delivered one that the group's filters
	// match: the next it would receive.
	var next uint64
	for _, f := range r.filters {
		m, err := s.GetMsg(ctx, info.Delivered.Stream+1, jetstream.WithGetMsgSubject(f))
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				g.log.Debug("watch: get next message", "filter", f, "err", err)
			}
			continue
		}
		if next == 0 || m.Sequence < next {
			next = m.Sequence
		}
	}
	return next
}
