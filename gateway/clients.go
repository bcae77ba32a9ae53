package gateway

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// refusals limits refused requests per client address: every refused
// request (401, 404, 400, 413) takes a token from its address's bucket, and
// an address with an empty bucket is answered 429 before any work is done.
// Genuine senders, whose requests verify, never spend from it, so a flood of
// strangers can't use up the budget of real webhooks.
type refusals struct {
	limit rate.Limit
	burst int
	max   int

	mu       sync.Mutex
	cur, old map[string]*rate.Limiter
	rotated  time.Time
}

// maxTracked bounds the addresses tracked at once; past it, new addresses
// share one bucket.
const maxTracked = 100_000

func newRefusals(limit float64, burst int) *refusals {
	return &refusals{limit: rate.Limit(limit), burst: burst, max: maxTracked,
		cur: map[string]*rate.Limiter{}, old: map[string]*rate.Limiter{}, rotated: time.Now()}
}

// lookup returns addr's bucket. Buckets live for two rotations of a minute
// after their last use: long enough that a full one matters, short enough
// that memory stays bounded by the addresses seen in two minutes.
func (r *refusals) lookup(addr string) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.rotated) > time.Minute {
		r.old, r.cur, r.rotated = r.cur, map[string]*rate.Limiter{}, time.Now()
	}
	if l, ok := r.cur[addr]; ok {
		return l
	}
	if l, ok := r.old[addr]; ok {
		r.cur[addr] = l
		return l
	}
	if len(r.cur) >= r.max {
		addr = "overflow"
		if l, ok := r.cur[addr]; ok {
			return l
		}
	}
	l := rate.NewLimiter(r.limit, r.burst)
	r.cur[addr] = l
	return l
}

// exhausted reports whether addr has no refusals left, without spending one.
func (r *refusals) exhausted(addr string) bool {
	return r.lookup(addr).Tokens() < 1
}

// refused spends one of addr's refusals.
func (r *refusals) refused(addr string) { r.lookup(addr).Allow() }

// retryAfter is how long until addr's bucket has a token again.
func (r *refusals) retryAfter() time.Duration {
	return time.Duration(float64(time.Second) / float64(r.limit))
}

// trustedProxies are the load balancers whose X-Forwarded-For names the client.
type trustedProxies []netip.Prefix

// parseTrustedProxies reads TRUSTED_PROXIES: IPs or CIDRs, comma-separated.
func parseTrustedProxies(list []string) (trustedProxies, error) {
	var out trustedProxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (t trustedProxies) contains(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address a request came from: the peer, or, when the
// peer is a trusted proxy, the last address in X-Forwarded-For (the one
// that proxy added; earlier entries are the client's own claims).
func (t trustedProxies) clientAddr(peer net.IP, forwardedFor []byte) string {
	if len(t) == 0 || len(forwardedFor) == 0 || !t.contains(peer) {
		return peer.String()
	}
	last := string(forwardedFor)
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	last = strings.TrimSpace(last)
	if a, err := netip.ParseAddr(last); err == nil {
		return a.Unmap().String()
	}
	return peer.String()
}
