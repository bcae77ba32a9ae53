// Package console is the operations console: a small web application, served
// on its own address, to find any event (by record ID through the indexer
// group's bucket), see its record, its groups' state and its trace, work the
// dead letters, watch the groups and streams, and check the pipeline's
// health. Pages are rendered on the server with html/template; the little
// JavaScript there is (confirmations, select-all, auto-refresh) is served by
// the binary, so it works air-gapped.
//
// Every page needs a session, opened with a token (ADMIN_TOKEN or a named
// one from ADMIN_TOKENS); every form that changes something carries a CSRF
// token; viewers may read, operators may also act. Actions are logged with
// who, what and when, and listed on the dead-letters page.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/spectora-stream/spectora-stream/admin"
)

var (
	// ErrConfig is a console setting that can't be used.
	ErrConfig = errors.New("console configuration")
	// errBadRequest is a request the console can't act on (400).
	errBadRequest = errors.New("bad request")
	// errForbidden is an action the user's role or form doesn't allow (403).
	errForbidden = errors.New("forbidden")
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures a Console.
type Config struct {
	// Users are the tokens that open a session; at least one.
	Users []User
	// JaegerURL is the Jaeger UI's base URL, for trace links; empty: none.
	JaegerURL string
	// Gatherer is this process's metrics registry when the gateway runs in
	// it: the health page reads the gateway's answers from it.
	Gatherer prometheus.Gatherer
	// MetricsURLs are gateways' /metrics URLs the health page scrapes; each
	// address the host resolves to is scraped (every replica behind one
	// DNS name).
	MetricsURLs []string
	// PageRate is how many pages a second one user may load, with a burst
	// of twice that; 0: DefaultPageRate; negative: no limit.
	PageRate int
	// SessionTTL is how long a session lasts; default 12h.
	SessionTTL time.Duration
	// Logger receives the action log; default slog.Default().
	Logger *slog.Logger
}

// Console serves the console's pages. Build it with New.
type Console struct {
	cfg      Config
	js       jetstream.JetStream
	admin    *admin.Admin
	sessions *sessions
	pages    map[string]*template.Template
	log      *slog.Logger
	health   *healthSampler

	mu       sync.Mutex
	actions  []Action                 // newest last, at most maxActions
	rates    map[string]counter       // last consumer sample, for the groups page's rates
	limiters map[string]*rate.Limiter // pages per user
}

// DefaultPageRate is how many pages a second one user may load (with a
// burst of twice that): far above a person, or a tab refreshing every 5 s;
// it bounds the stream reads one user's pages cause (docs/performance.md).
const DefaultPageRate = 5

// allow takes one page from user's budget.
func (c *Console) allow(user string) bool {
	if c.cfg.PageRate < 0 {
		return true
	}
	c.mu.Lock()
	l, ok := c.limiters[user]
	if !ok {
		l = rate.NewLimiter(rate.Limit(c.cfg.PageRate), 2*c.cfg.PageRate)
		c.limiters[user] = l
	}
	c.mu.Unlock()
	return l.Allow()
}

// Action is one thing a user did, as logged and listed.
type Action struct {
	Time   time.Time
	User   string
	What   string
	Result string
}

const maxActions = 200

// Validate checks cfg as New does; its errors wrap ErrConfig and name the
// binary's settings (ADMIN_TOKENS, JAEGER_UI_URL, ADMIN_METRICS_URLS).
func Validate(cfg Config) error {
	if err := validateUsers(cfg.Users); err != nil {
		return fmt.Errorf("ADMIN_TOKEN/ADMIN_TOKENS: %w", err)
	}
	if cfg.JaegerURL != "" && !httpURL(cfg.JaegerURL) {
		return fmt.Errorf("%w: JAEGER_UI_URL %q: want the Jaeger UI's http(s) URL, e.g. http://localhost:16686", ErrConfig, cfg.JaegerURL)
	}
	for _, m := range cfg.MetricsURLs {
		if !httpURL(m) {
			return fmt.Errorf("%w: ADMIN_METRICS_URLS %q: want http(s) URLs of gateways' /metrics", ErrConfig, m)
		}
	}
	return nil
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// New returns a Console over js.
func New(cfg Config, js jetstream.JetStream) (*Console, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	cfg.JaegerURL = strings.TrimRight(cfg.JaegerURL, "/")
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.PageRate == 0 {
		cfg.PageRate = DefaultPageRate
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	return &Console{
		cfg: cfg, js: js, admin: admin.New(js), sessions: newSessions(cfg.Users, cfg.SessionTTL), pages: pages,
		log: cfg.Logger.With("component", "console"), health: newHealthSampler(cfg.Gatherer, cfg.MetricsURLs),
		rates: map[string]counter{}, limiters: map[string]*rate.Limiter{},
	}, nil
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// Handler returns the console's HTTP handler.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("GET /login/check", c.loginCheck)
	mux.Handle("POST /logout", c.authed(c.logout, false))
	mux.Handle("GET /{$}", http.RedirectHandler("/events", http.StatusSeeOther))
	mux.Handle("GET /events", c.authed(c.events, false))
	mux.Handle("GET /events/{seq}", c.authed(c.event, false))
	mux.Handle("GET /dead-letters", c.authed(c.deadLetters, false))
	mux.Handle("GET /dead-letters/{seq}", c.authed(c.deadLetter, false))
	mux.Handle("POST /dead-letters/redrive", c.authed(c.redrive, true))
	mux.Handle("POST /dead-letters/purge", c.authed(c.purge, true))
	mux.Handle("GET /groups", c.authed(c.groups, false))
	mux.Handle("POST /groups/replay", c.authed(c.replay, true))
	mux.Handle("GET /health", c.authed(c.healthPage, false))
	return securityHeaders(mux)
}

// securityHeaders sets, on every answer, a CSP allowing only the console's
// own scripts and styles (no inline script), no framing, no sniffing, no
// caching and no referrer.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// request is what a page handler gets: the user, and the session for the
// CSRF tokens of its forms.
type request struct {
	*http.Request
	user    User
	session string
}

type handler func(w http.ResponseWriter, r *request) error

// authed wraps a page: no session sends a browser to the login page (a POST
// gets 401); a state-changing request also needs the operator role, the
// session's CSRF token and, when the browser sends one, a same-origin
// Origin header.
func (c *Console) authed(h handler, changes bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(cookieName)
		var u User
		ok := err == nil
		if ok {
			u, ok = c.sessions.check(ck.Value)
		}
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, http.StatusUnauthorized, "Log in first: no valid session (it may have expired).")
			return
		}
		if !c.allow(u.Name) {
			w.Header().Set("Retry-After", "1")
			c.fail(w, r, nil, http.StatusTooManyRequests, fmt.Sprintf("Slow down: at most %d pages a second per user (ADMIN_PAGE_RATE): each page reads the streams.", c.cfg.PageRate))
			return
		}
		req := &request{Request: r, user: u, session: ck.Value}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				c.fail(w, r, req, http.StatusForbidden, "Refused: the request came from another site (Origin header).")
				return
			}
			if !c.sessions.checkCSRF(ck.Value, r.PostFormValue("csrf")) {
				c.fail(w, r, req, http.StatusForbidden, "Refused: missing or wrong CSRF token. Reload the page and try again.")
				return
			}
			if changes && u.Role != RoleOperator {
				c.fail(w, r, req, http.StatusForbidden, "Refused: "+u.Name+" is a viewer; redrive, purge and replay need an operator token.")
				return
			}
		}
		if err := h(w, req); err != nil {
			c.failErr(w, r, req, err)
		}
	})
}

// sameOrigin is false only when the browser says the request came from
// another origin.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" && r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (c *Console) failErr(w http.ResponseWriter, r *http.Request, req *request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, admin.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, admin.ErrNotFound), errors.Is(err, jetstream.ErrMsgNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errForbidden):
		status = http.StatusForbidden
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	if status >= 500 {
		c.log.Error("console page failed", "path", r.URL.Path, "err", err)
	}
	c.fail(w, r, req, status, err.Error())
}

func (c *Console) fail(w http.ResponseWriter, _ *http.Request, req *request, status int, msg string) {
	c.render(w, req, status, "error", map[string]any{"Status": status, "StatusText": http.StatusText(status), "Message": msg})
}

// page is what every template gets: its data, the user and the CSRF token.
type page struct {
	Title string
	Nav   string
	User  *User
	CSRF  string
	Data  any
}

var titles = map[string]string{
	"events": "Events", "event": "Event", "deadletters": "Dead letters", "deadletter": "Dead letter",
	"groups": "Groups and streams", "health": "Health", "login": "Log in", "error": "Error",
}

func (c *Console) render(w http.ResponseWriter, req *request, status int, name string, data any) {
	p := page{Title: titles[name], Nav: name, Data: data}
	if req != nil {
		p.User = &req.user
		p.CSRF = c.sessions.csrf(req.session)
	}
	var b bytes.Buffer
	if err := c.pages[name].Execute(&b, p); err != nil {
		c.log.Error("console template failed", "page", name, "err", err)
		http.Error(w, "the page failed to render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// record logs an action and keeps it for the dead-letters page.
func (c *Console) record(u User, what, result string) {
	c.log.Info("console action", "user", u.Name, "role", string(u.Role), "action", what, "result", result)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.actions = append(c.actions, Action{Time: time.Now().UTC(), User: u.Name, What: what, Result: result})
	if len(c.actions) > maxActions {
		c.actions = c.actions[len(c.actions)-maxActions:]
	}
}

// Actions returns the actions taken through this console, newest first.
func (c *Console) Actions() []Action {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Action, len(c.actions))
	for i, a := range c.actions {
		out[len(out)-1-i] = a
	}
	return out
}
