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
// and /v2/contacts/{id} answer JSON:API documents from a Store.
type API struct {
	cfg   APIConfig
	store *Store
	mux   *http.ServeMux
	// Requests counts every request; Served counts 200 answers.
	Requests, Served atomic.Int64
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

func (a *API) handle(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.Requests.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+a.cfg.Token {
			jsonError(w, http.StatusUnauthorized, "missing or wrong Bearer token")
			return
		}
		if a.cfg.Latency > 0 {
			select {
			case <-time.After(a.cfg.Latency):
			case <-r.Context().Done():
				return
			}
		}
		if a.cfg.RateLimitRate > 0 && rand.Float64() < a.cfg.RateLimitRate {
			w.Header().Set("Retry-After", strconv.Itoa(int(a.cfg.RetryAfter.Seconds())))
			jsonError(w, http.StatusTooManyRequests, "rate limited")
			return
		}
		if a.cfg.ErrorRate > 0 && rand.Float64() < a.cfg.ErrorRate {
			jsonError(w, http.StatusInternalServerError, "simulated failure")
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
