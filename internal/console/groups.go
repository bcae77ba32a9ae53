package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/stream"
)

type streamRow struct {
	Name                  string
	Msgs, Bytes           uint64
	MaxMsgs, MaxBytes     int64
	MaxAge                time.Duration
	FirstTime, LastTime   time.Time
	FirstSeq, LastSeq     uint64
	NextSeq               uint64
	Consumers             int
	MsgsUse, BytesUse     string // percentage of the limit, "" without one
	Replicas              int
	Leader, ClusterHealth string
}

type groupRow struct {
	Stream, Name             string
	Pending                  uint64
	AckPending, Redelivered  int
	Waiting                  int
	Delivered, AckFloor      uint64
	LastDelivered, LastAcked time.Time
	Rate                     string // acks/s since the previous view
	Paused                   bool
}

// counter is a group's ack floor at a time, for rates between two views.
type counter struct {
	at   time.Time
	acks uint64
}

type groupsData struct {
	Streams []streamRow
	Groups  []groupRow
	Flash   string
}

func (c *Console) groups(w http.ResponseWriter, r *request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := groupsData{Flash: r.URL.Query().Get("done")}
	now := time.Now()
	for _, name := range []string{stream.Raw, stream.Enriched, stream.DLQ} {
		s, err := c.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		st := streamRow{Name: name, Msgs: info.State.Msgs, Bytes: info.State.Bytes, MaxMsgs: info.Config.MaxMsgs, MaxBytes: info.Config.MaxBytes,
			MaxAge: info.Config.MaxAge, FirstTime: info.State.FirstTime, LastTime: info.State.LastTime, FirstSeq: info.State.FirstSeq,
			LastSeq: info.State.LastSeq, Consumers: info.State.Consumers, Replicas: info.Config.Replicas}
		if info.Config.MaxMsgs > 0 {
			st.MsgsUse = fmt.Sprintf("%.1f%%", 100*float64(info.State.Msgs)/float64(info.Config.MaxMsgs))
		}
		if info.Config.MaxBytes > 0 {
			st.BytesUse = fmt.Sprintf("%.1f%%", 100*float64(info.State.Bytes)/float64(info.Config.MaxBytes))
		}
		if cl := info.Cluster; cl != nil && len(cl.Replicas) > 0 {
			current := 0
			for _, p := range cl.Replicas {
				if p.Current && !p.Offline {
					current++
				}
			}
			st.Leader, st.ClusterHealth = cl.Leader, fmt.Sprintf("%d of %d followers current", current, len(cl.Replicas))
		}
		st.NextSeq = info.State.LastSeq + 1
		d.Streams = append(d.Streams, st)
		if name == stream.DLQ {
			continue
		}
		for ci := range s.ListConsumers(ctx).Info() {
			if ci.Config.Durable == "" {
				continue
			}
			g := groupRow{Stream: name, Name: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered,
				Waiting: ci.NumWaiting, Delivered: ci.Delivered.Stream, AckFloor: ci.AckFloor.Stream, Paused: ci.Paused}
			if ci.Delivered.Last != nil {
				g.LastDelivered = ci.Delivered.Last.UTC()
			}
			if ci.AckFloor.Last != nil {
				g.LastAcked = ci.AckFloor.Last.UTC()
			}
			g.Rate = c.rate(name+"/"+ci.Name, now, ci.AckFloor.Consumer)
			d.Groups = append(d.Groups, g)
		}
	}
	c.render(w, r, http.StatusOK, "groups", d)
	return nil
}

// rate is the group's acknowledgements per second since this console last
// looked (at least a second and at most ten minutes before), or "—".
func (c *Console) rate(key string, now time.Time, acks uint64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.rates[key]
	dt := now.Sub(prev.at)
	if ok && dt < time.Second {
		return "—"
	}
	c.rates[key] = counter{at: now, acks: acks}
	if !ok || dt > 10*time.Minute || acks < prev.acks {
		return "—"
	}
	return fmt.Sprintf("%.1f/s", float64(acks-prev.acks)/dt.Seconds())
}

// replay makes a group reprocess from a time or a sequence, once the form's
// confirm box is checked.
func (c *Console) replay(w http.ResponseWriter, r *request) error {
	target := r.PostFormValue("group") // "STREAM/group"
	streamName, group, ok := strings.Cut(target, "/")
	if !ok || group == "" || (streamName != stream.Raw && streamName != stream.Enriched) {
		return fmt.Errorf("%w: group %q: pick a group from the list", errBadRequest, target)
	}
	if r.PostFormValue("confirm") != "yes" {
		return fmt.Errorf("%w: replay %s: check the confirmation box", errBadRequest, group)
	}
	var since time.Time
	var from uint64
	if v := strings.TrimSpace(r.PostFormValue("from_seq")); v != "" {
		var err error
		if from, err = strconv.ParseUint(v, 10, 64); err != nil || from == 0 {
			return fmt.Errorf("%w: from sequence %q: want a stream sequence", errBadRequest, v)
		}
	}
	if v := strings.TrimSpace(r.PostFormValue("since")); v != "" {
		var err error
		if since, err = parseTime(v, time.Now()); err != nil {
			return fmt.Errorf("%w: since: %v", errBadRequest, err)
		}
	}
	if (from == 0) == since.IsZero() {
		return fmt.Errorf("%w: replay %s: give a start time or a sequence, not both", errBadRequest, group)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	what := fmt.Sprintf("replay %s on %s from sequence %d", group, streamName, from)
	if from == 0 {
		what = fmt.Sprintf("replay %s on %s since %s", group, streamName, since.UTC().Format(time.RFC3339))
	}
	_, seq, err := c.admin.Replay(ctx, streamName, group, since, from)
	result := fmt.Sprintf("restarts at sequence %d", seq)
	switch {
	case err != nil:
		result = "failed: " + err.Error()
	case seq == 0:
		result = "nothing stored since then: unchanged"
	}
	c.record(r.user, what, result)
	if err != nil {
		return err
	}
	http.Redirect(w, r.Request, "/groups?"+url.Values{"done": {what + ": " + result}}.Encode(), http.StatusSeeOther)
	return nil
}
