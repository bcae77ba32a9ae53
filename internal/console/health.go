package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spectora-stream/spectora-stream/reconcile"
	"github.com/spectora-stream/spectora-stream/stream"
)

// gatewayTotals are the counters of one gateway the health page shows.
type gatewayTotals struct {
	Requests, Unauthorized, Unavailable float64
	LastStored                          map[string]time.Time // by source
}

// The gateway's outcomes answered with 503.
var unavailableOutcomes = map[string]bool{"unavailable": true, "stream_full": true, "busy": true}

func totalsFrom(mfs []*dto.MetricFamily, t *gatewayTotals) {
	for _, mf := range mfs {
		switch mf.GetName() {
		case "spectora_gateway_requests_total":
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue()
				t.Requests += v
				switch outcome := label(m, "outcome"); {
				case outcome == "unauthorized":
					t.Unauthorized += v
				case unavailableOutcomes[outcome]:
					t.Unavailable += v
				}
			}
		case "spectora_gateway_last_stored_timestamp_seconds":
			for _, m := range mf.GetMetric() {
				at := time.Unix(0, int64(m.GetGauge().GetValue()*1e9)).UTC()
				if src := label(m, "source"); at.After(t.LastStored[src]) {
					t.LastStored[src] = at
				}
			}
		}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// healthSampler reads the gateway's counters, from this process's registry
// and from each address of each metrics URL, and keeps ten minutes of
// samples for rates.
type healthSampler struct {
	gatherer prometheus.Gatherer
	urls     []string
	client   *http.Client

	mu      sync.Mutex
	samples []sample
}

// sample is what each gateway (by target: "this process" or a URL)
// answered at one time.
type sample struct {
	at      time.Time
	targets map[string]gatewayTotals
	errors  []string
}

// lastStored is the newest time each source was stored at, over targets.
func (s sample) lastStored() map[string]time.Time {
	out := map[string]time.Time{}
	for _, t := range s.targets {
		for src, at := range t.LastStored {
			if at.After(out[src]) {
				out[src] = at
			}
		}
	}
	return out
}

// rates are the requests, 401s and 503s per second between then and s,
// summed per gateway present in both: a gateway that appears or drops out
// between them adds no false spike.
func (s sample) rates(then sample) (requests, unauthorized, unavailable float64) {
	dt := s.at.Sub(then.at).Seconds()
	for target, now := range s.targets {
		prev, ok := then.targets[target]
		if !ok || dt <= 0 {
			continue
		}
		requests += max(now.Requests-prev.Requests, 0) / dt
		unauthorized += max(now.Unauthorized-prev.Unauthorized, 0) / dt
		unavailable += max(now.Unavailable-prev.Unavailable, 0) / dt
	}
	return requests, unauthorized, unavailable
}

func newHealthSampler(g prometheus.Gatherer, urls []string) *healthSampler {
	return &healthSampler{gatherer: g, urls: urls, client: &http.Client{Timeout: 3 * time.Second}}
}

func (h *healthSampler) enabled() bool { return h.gatherer != nil || len(h.urls) > 0 }

// sample reads every gateway now and keeps the sample.
func (h *healthSampler) sample(ctx context.Context) sample {
	s := sample{at: time.Now(), targets: map[string]gatewayTotals{}}
	read := func(target string, mfs []*dto.MetricFamily) {
		t := gatewayTotals{LastStored: map[string]time.Time{}}
		totalsFrom(mfs, &t)
		s.targets[target] = t
	}
	if h.gatherer != nil {
		if mfs, err := h.gatherer.Gather(); err == nil {
			read("this process", mfs)
		} else {
			s.errors = append(s.errors, "this process: "+err.Error())
		}
	}
	for _, raw := range h.urls {
		for _, target := range expand(ctx, raw) {
			mfs, err := h.scrape(ctx, target)
			if err != nil {
				s.errors = append(s.errors, err.Error())
				continue
			}
			read(target, mfs)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, s)
	cut := 0
	for cut < len(h.samples)-1 && s.at.Sub(h.samples[cut].at) > 10*time.Minute {
		cut++
	}
	h.samples = h.samples[cut:]
	return s
}

// expand turns a URL into one per address its host resolves to, so every
// replica behind a service name is read.
func expand(ctx context.Context, raw string) []string {
	u, err := url.Parse(raw)
	// https keeps its host name: certificates name it, not the addresses.
	if err != nil || u.Scheme != "http" || net.ParseIP(u.Hostname()) != nil {
		return []string{raw}
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, u.Hostname())
	if err != nil || len(addrs) == 0 {
		return []string{raw}
	}
	sort.Strings(addrs)
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		v := *u
		switch port := u.Port(); {
		case port != "":
			v.Host = net.JoinHostPort(a, port)
		case strings.Contains(a, ":"):
			v.Host = "[" + a + "]"
		default:
			v.Host = a
		}
		out = append(out, v.String())
	}
	return out
}

func (h *healthSampler) scrape(ctx context.Context, target string) ([]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics %s: %s", target, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", target, err)
	}
	out := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		out = append(out, mf)
	}
	return out, nil
}

// Run samples the gateways every interval until ctx ends, so the health
// page has rates on its first view.
func (c *Console) Run(ctx context.Context, interval time.Duration) {
	if !c.health.enabled() {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.health.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type sourceRow struct {
	Source string
	Last   time.Time
	Ago    string
	From   string
}

type reconcileRow struct {
	Key string
	reconcile.Checkpoint
}

type healthData struct {
	Metrics          bool
	Gateways         int
	Window           string
	Requests         string
	Unauthorized     string
	Unavailable      string
	MetricErrors     []string
	Sources          []sourceRow
	DeadLetters      uint64
	DeadLetterGroups []struct {
		Group string
		N     uint64
	}
	Reconcile     []reconcileRow
	ReconcileNote string
}

func (c *Console) healthPage(w http.ResponseWriter, r *request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := healthData{Metrics: c.health.enabled()}
	last := map[string]sourceRow{}
	if d.Metrics {
		now := c.health.sample(ctx)
		d.Gateways, d.MetricErrors = len(now.targets), now.errors
		c.health.mu.Lock()
		then := c.health.samples[0]
		c.health.mu.Unlock()
		if dt := now.at.Sub(then.at); dt >= 5*time.Second {
			d.Window = dt.Round(time.Second).String()
			req, unauth, unavail := now.rates(then)
			d.Requests, d.Unauthorized, d.Unavailable = fmt.Sprintf("%.2f/s", req), fmt.Sprintf("%.2f/s", unauth), fmt.Sprintf("%.2f/s", unavail)
		}
		for src, at := range now.lastStored() {
			last[src] = sourceRow{Source: src, Last: at, From: "gateway metrics"}
		}
	}
	// The stream's newest events say the same for sources no gateway read
	// here has answered.
	if s, err := c.js.Stream(ctx, stream.Raw); err == nil {
		if info, err := s.Info(ctx); err == nil && info.State.Msgs > 0 {
			start := info.State.LastSeq - min(info.State.LastSeq-info.State.FirstSeq, window-1)
			rows, err := readRange(ctx, s, start, info.State.LastSeq)
			if err == nil {
				for _, row := range rows {
					if prev, ok := last[row.Source]; !ok || row.Time.After(prev.Last) {
						last[row.Source] = sourceRow{Source: row.Source, Last: row.Time, From: "newest stored events"}
					}
				}
			}
		}
	}
	for _, sr := range last {
		sr.Ago = time.Since(sr.Last).Round(time.Second).String()
		d.Sources = append(d.Sources, sr)
	}
	sort.Slice(d.Sources, func(i, j int) bool { return d.Sources[i].Source < d.Sources[j].Source })
	if s, err := c.js.Stream(ctx, stream.DLQ); err == nil {
		if info, err := s.Info(ctx, jetstream.WithSubjectFilter(stream.DeadLetterFilter(""))); err == nil {
			d.DeadLetters = info.State.Msgs
			byGroup := map[string]uint64{}
			for subj, n := range info.State.Subjects {
				if parts := strings.Split(subj, "."); len(parts) > 2 {
					byGroup[parts[2]] += n
				}
			}
			for g, n := range byGroup {
				d.DeadLetterGroups = append(d.DeadLetterGroups, struct {
					Group string
					N     uint64
				}{g, n})
			}
			sort.Slice(d.DeadLetterGroups, func(i, j int) bool { return d.DeadLetterGroups[i].Group < d.DeadLetterGroups[j].Group })
		}
	}
	c.reconcilerRows(ctx, &d)
	c.render(w, r, http.StatusOK, "health", d)
	return nil
}

func (c *Console) reconcilerRows(ctx context.Context, d *healthData) {
	kv, err := c.js.KeyValue(ctx, stream.ReconcileBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		d.ReconcileNote = "The reconciler has not run here (RECONCILE_INTERVAL is off, and no reconcile command ran)."
		return
	}
	if err != nil {
		d.ReconcileNote = err.Error()
		return
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		d.ReconcileNote = err.Error()
		return
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		row := reconcileRow{Key: k}
		if json.Unmarshal(e.Value(), &row.Checkpoint) == nil {
			d.Reconcile = append(d.Reconcile, row)
		}
	}
	sort.Slice(d.Reconcile, func(i, j int) bool { return d.Reconcile[i].Key < d.Reconcile[j].Key })
	if len(d.Reconcile) == 0 {
		d.ReconcileNote = "No reconciler pass has finished yet."
	}
}
