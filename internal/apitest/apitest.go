// Package apitest is a Spectora API stand-in for tests: JSON:API records, a
// call counter, and deterministic knobs for latency, 5xx, 429, malformed
// answers and deleted records.
package apitest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Token is the Bearer token the API accepts.
const Token = "test-token"

// API is a running fake API.
type API struct {
	*httptest.Server
	// Calls counts every request.
	Calls atomic.Int64
	// Conns counts the connections clients opened.
	Conns atomic.Int64
	// Latency is added to every answer.
	Latency time.Duration
	// Fail500, Fail429 and Garble answer 500, 429 (with RetryAfter) or a
	// truncated 200 this many more times.
	Fail500, Fail429, Garble atomic.Int64
	// RetryAfter is the 429's Retry-After header; default "1".
	RetryAfter string
	// Key is the API key it accepts (default Token) and names the company
	// in every record it serves (attributes.company).
	Key string

	mu        sync.Mutex
	gone      map[string]bool
	callTimes []time.Time
	paths     []string
}

// New starts an API closed when the test ends.
func New(t testing.TB) *API {
	t.Helper()
	a := &API{gone: map[string]bool{}, RetryAfter: "1", Key: Token}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			a.Conns.Add(1)
		}
	}
	a.Start()
	t.Cleanup(a.Close)
	return a
}

// Gone makes path answer 404 from now on.
func (a *API) Gone(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gone[path] = true
}

// CallTimes are the times requests arrived.
func (a *API) CallTimes() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.callTimes...)
}

// Paths are the request paths in order.
func (a *API) Paths() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.paths...)
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	a.Calls.Add(1)
	a.mu.Lock()
	a.callTimes = append(a.callTimes, time.Now())
	a.paths = append(a.paths, r.URL.Path)
	gone := a.gone[r.URL.Path]
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+a.Key {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	time.Sleep(a.Latency)
	switch {
	case a.Fail429.Add(-1) >= 0:
		w.Header().Set("Retry-After", a.RetryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case a.Fail500.Add(-1) >= 0:
		w.WriteHeader(http.StatusInternalServerError)
		return
	case gone:
		w.WriteHeader(http.StatusNotFound)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	w.Header().Set("Content-Type", "application/vnd.api+json")
	doc := fmt.Sprintf(`{"data":{"id":%q,"type":%q,"attributes":{"path":%q,"company":%q}}}`, parts[len(parts)-1], parts[len(parts)-2], r.URL.Path, a.Key)
	if a.Garble.Add(-1) >= 0 {
		doc = doc[:len(doc)/2]
	}
	_, _ = w.Write([]byte(doc))
}
