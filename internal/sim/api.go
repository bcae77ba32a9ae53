package sim

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// APIConfig configures the fake API's behaviour.
type APIConfig struct {
	// Token is the Bearer token it accepts; required.
	Token string
	// Latency is added to every answer.
	Latency time.Duration
	// ErrorRate is the share of requests answered 500 (0 to 1).
	ErrorRate float64
	// RateLimitRate is the share of requests answered 429 with RetryAfter.
	RateLimitRate float64
	// RetryAfter is the Retry-After of a 429; default 1s.
	RetryAfter time.Duration
}

// API is a fake Spectora API: GET /v2/inspections/{id}, /v2/connections/{id}
// and /v2/contacts/{id} answer JSON:API documents from a Store; GET
// /v2/inspections, /v2/connections and /v2/contacts list records changed
// since filter[updated_since], paged by page[number] and page[size] (at most
// 200) with links.next.
type API struct {
	cfg   APIConfig
	store *Store
	mux   *http.ServeMux
	// Requests counts every request; Served counts 200 answers to record
	// requests, Lists 200 answers to list requests.
	Requests, Served, Lists atomic.Int64
}

// NewAPI serves store's records.
func NewAPI(cfg APIConfig, store *Store) *API {
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	a := &API{cfg: cfg, store: store, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /v2/inspections/{id}", a.handle(typeInspection))
	a.mux.HandleFunc("GET /v2/connections/{id}", a.handle(typeAgent))
	a.mux.HandleFunc("GET /v2/contacts/{id}", a.handle(typeClient))
	a.mux.HandleFunc("GET /v2/inspections", a.handleList(typeInspection))
	a.mux.HandleFunc("GET /v2/connections", a.handleList(typeAgent))
	a.mux.HandleFunc("GET /v2/contacts", a.handleList(typeClient))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	a.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		jsonError(w, http.StatusNotFound, "no such route")
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// admit answers what every request shares: the token, latency, simulated
// 429s and 500s. It reports whether the request goes on.
func (a *API) admit(w http.ResponseWriter, r *http.Request) bool {
	a.Requests.Add(1)
	if r.Header.Get("Authorization") != "Bearer "+a.cfg.Token {
		jsonError(w, http.StatusUnauthorized, "missing or wrong Bearer token")
		return false
	}
	if a.cfg.Latency > 0 {
		select {
		case <-time.After(a.cfg.Latency):
		case <-r.Context().Done():
			return false
		}
	}
	if a.cfg.RateLimitRate > 0 && rand.Float64() < a.cfg.RateLimitRate {
		w.Header().Set("Retry-After", strconv.Itoa(int(a.cfg.RetryAfter.Seconds())))
		jsonError(w, http.StatusTooManyRequests, "rate limited")
		return false
	}
	if a.cfg.ErrorRate > 0 && rand.Float64() < a.cfg.ErrorRate {
		jsonError(w, http.StatusInternalServerError, "simulated failure")
		return false
	}
	return true
}

// handleList lists typ's records changed since filter[updated_since].
func (a *API) handleList(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.admit(w, r) {
			return
		}
		q := r.URL.Query()
		var since time.Time
		if v := q.Get("filter[updated_since]"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				jsonError(w, http.StatusBadRequest, "filter[updated_since]: want an RFC 3339 time")
				return
			}
			since = t
		}
		number, size := 1, 20
		for name, p := range map[string]*int{"page[number]": &number, "page[size]": &size} {
			if v := q.Get(name); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || (name == "page[size]" && n > 200) {
					jsonError(w, http.StatusBadRequest, name+": want a positive number (page[size] at most 200)")
					return
				}
				*p = n
			}
		}
		data, more := a.store.list(typ, since, number, size)
		links := map[string]any{"next": nil}
		if more {
			q.Set("page[number]", strconv.Itoa(number+1))
			next := *r.URL
			next.RawQuery = q.Encode()
			next.Scheme, next.Host = "http", r.Host
			links["next"] = next.String()
		}
		a.Lists.Add(1)
		w.Header().Set("Content-Type", "application/vnd.api+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": data, "links": links})
	}
}

func (a *API) handle(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.admit(w, r) {
			return
		}
		doc, ok := a.store.get(typ, r.PathValue("id"))
		if !ok {
			jsonError(w, http.StatusNotFound, "record not found")
			return
		}
		a.Served.Add(1)
		w.Header().Set("Content-Type", "application/vnd.api+json")
		_ = json.NewEncoder(w).Encode(doc)
	}
}

func jsonError(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/vnd.api+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"status": strconv.Itoa(status), "detail": detail}}})
}
