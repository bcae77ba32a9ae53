package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/internal/console"
	"github.com/spectora-stream/spectora-stream/internal/eventindex"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/stream"
)

const (
	opToken     = "operator-token-0123456789"
	viewerToken = "viewer-token-0123456789"
)

var users = []console.User{
	{Name: "alice", Token: opToken, Role: console.RoleOperator},
	{Name: "bob", Token: viewerToken, Role: console.RoleViewer},
}

// env is a console over an embedded JetStream holding real streams and
// groups: the indexer, and a group "billing" that dead-letters record "bad".
type env struct {
	t      *testing.T
	js     jetstream.JetStream
	srv    *httptest.Server
	c      *console.Console
	billed atomic.Int64 // events the billing group handled
	logs   *natstest.Buffer
}

func newEnv(t *testing.T, cfg console.Config) *env {
	t.Helper()
	s := natstest.Server(t)
	_, js := natstest.JetStream(t, s)
	natstest.Streams(t, js)
	if cfg.Users == nil {
		cfg.Users = users
	}
	if cfg.PageRate == 0 {
		cfg.PageRate = -1 // these tests load pages faster than a person
	}
	logs := &natstest.Buffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	c, err := console.New(cfg, js)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, js: js, srv: srv, c: c, logs: logs}
}

// groups runs the indexer and billing groups until the test ends.
func (e *env) groups() {
	e.t.Helper()
	ctx := context.Background()
	kv, err := e.js.CreateOrUpdateKeyValue(ctx, eventindex.BucketConfig(time.Hour, 1))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, cfg := range []consumers.Config{
		{Name: eventindex.GroupName, Handler: eventindex.Handler(kv)},
		{Name: "billing", MaxDeliver: 1, Handler: func(_ context.Context, m *consumers.Message) error {
			e.billed.Add(1)
			if m.Event.GetRecordId() == "bad" {
				return fmt.Errorf("%w: record bad can't be billed", consumers.ErrPermanent)
			}
			return nil
		}},
	} {
		g, err := consumers.NewGroup(cfg, e.js)
		if err != nil {
			e.t.Fatal(err)
		}
		r := natstest.Run(e.t, g)
		e.t.Cleanup(func() { _ = r.Stop() })
	}
}

func (e *env) settled(seq uint64) {
	e.t.Helper()
	for _, g := range []string{eventindex.GroupName, "billing"} {
		natstest.WaitDone(e.t, e.js, stream.Raw, g, seq)
	}
}

// login returns the session cookie for token.
func (e *env) login(token string) *http.Cookie {
	e.t.Helper()
	resp := e.post("/login", nil, url.Values{"token": {token}, "next": {"/groups"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login/check?next=%2Fgroups" {
		e.t.Fatalf("login: %s → %q", resp.Status, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-spectora-console" {
			session = ck
		}
	}
	if session == nil {
		e.t.Fatal("login set no session cookie")
	}
	// The check page sends a browser that kept the cookie on.
	if resp, _ := e.get("/login/check?next=%2Fgroups", session); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/groups" {
		e.t.Fatalf("login check: %s → %q", resp.Status, resp.Header.Get("Location"))
	}
	return session
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (e *env) do(req *http.Request, ck *http.Cookie) *http.Response {
	e.t.Helper()
	if ck != nil {
		req.AddCookie(ck)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (e *env) get(path string, ck *http.Cookie) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	resp := e.do(req, ck)
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// page GETs path with a session and fails unless it answers 200.
func (e *env) page(path string, ck *http.Cookie) string {
	e.t.Helper()
	resp, body := e.get(path, ck)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %s\n%s", path, resp.Status, errorText(body))
	}
	return body
}

func (e *env) post(path string, ck *http.Cookie, form url.Values) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(req, ck)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token a page's forms carry for the session.
func (e *env) csrf(ck *http.Cookie) string {
	e.t.Helper()
	m := csrfRe.FindStringSubmatch(e.page("/groups", ck))
	if m == nil {
		e.t.Fatal("no CSRF token on the groups page")
	}
	return m[1]
}

var errorRe = regexp.MustCompile(`(?s)<p class="error"[^>]*>(.*?)</p>`)

func errorText(body string) string {
	if m := errorRe.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

func publish(t *testing.T, js jetstream.JetStream, source, id, typ, record string) uint64 {
	t.Helper()
	msg := natstest.EventFrom(source, id, typ, record)
	msg.Header.Set(stream.HeaderTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ack, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(id))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func TestEveryPageNeedsASession(t *testing.T) {
	e := newEnv(t, console.Config{})
	for _, path := range []string{"/events", "/events/1", "/dead-letters", "/dead-letters/1", "/groups", "/health"} {
		resp, _ := e.get(path, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next="+url.QueryEscape(path) {
			t.Errorf("GET %s without a session: %s → %q, want 303 to the login page", path, resp.Status, resp.Header.Get("Location"))
		}
	}
	for _, path := range []string{"/dead-letters/redrive", "/dead-letters/purge", "/groups/replay", "/logout"} {
		if resp := e.post(path, nil, url.Values{"seq": {"1"}}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %s, want 401", path, resp.Status)
		}
	}
	forged := &http.Cookie{Name: "__Host-spectora-console", Value: "YWxpY2U.9999999999.000000000000.forged"}
	if resp, _ := e.get("/events", forged); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a forged session cookie: %s, want 303 to the login page", resp.Status)
	}
	// The login page itself, the static files and /healthz are open.
	for _, path := range []string{"/login", "/static/console.js", "/static/console.css", "/healthz"} {
		if resp, _ := e.get(path, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s, want 200", path, resp.Status)
		}
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t, console.Config{SessionTTL: time.Hour})
	resp := e.post("/login", nil, url.Values{"token": {"not-a-token-of-ours"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %s, want 401", resp.Status)
	}
	if len(resp.Cookies()) != 0 {
		t.Fatal("a wrong token got a cookie")
	}
	ck := e.login(opToken)
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.MaxAge != 3600 {
		t.Errorf("session cookie %+v: want Secure, HttpOnly, SameSite=Strict, Path=/, Max-Age=3600", ck)
	}
	if !strings.Contains(e.page("/events", ck), "alice (operator)") {
		t.Error("the page doesn't say who is logged in")
	}
	// A login never redirects off the host.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example", "/%2F/evil.example"} {
		resp := e.post("/login", nil, url.Values{"token": {opToken}, "next": {next}})
		if loc := resp.Header.Get("Location"); loc != "/login/check?next=%2Fevents" {
			t.Errorf("next=%s redirected to %q, want /events by the check", next, loc)
		}
		if resp, _ := e.get("/login/check?next="+url.QueryEscape(next), ck); resp.Header.Get("Location") != "/events" {
			t.Errorf("login check with next=%s redirected to %q, want /events", next, resp.Header.Get("Location"))
		}
	}
	// A browser that dropped the cookie (plain HTTP, not from localhost)
	// is told why instead of looping back to the login.
	if resp, body := e.get("/login/check?next=%2Fevents", nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "didn&#39;t keep the session cookie") {
		t.Errorf("login check without the cookie: %s %q", resp.Status, errorText(body))
	}
	// Posted from another site: refused.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/login", strings.NewReader(url.Values{"token": {opToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp := e.do(req, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site login: %s, want 403", resp.Status)
	}
	// Logging out ends the cookie.
	resp = e.post("/logout", ck, url.Values{"csrf": {e.csrf(ck)}})
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %s, cookies %v", resp.Status, resp.Cookies())
	}
}

func TestSessionsEndWithTheirToken(t *testing.T) {
	e := newEnv(t, console.Config{})
	ck := e.login(opToken)
	// eventsOn loads /events with alice's session on another console
	// configured with users.
	eventsOn := func(users []console.User) *http.Response {
		t.Helper()
		other, err := console.New(console.Config{Users: users}, e.js)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(other.Handler())
		defer srv.Close()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/events", nil)
		return e.do(req, ck)
	}
	// Another console with alice's token changed: her session is refused.
	if resp := eventsOn([]console.User{{Name: "alice", Token: "a-new-token-for-alice", Role: console.RoleOperator}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a session after its token changed: %s, want 303 to login", resp.Status)
	}
	// Adding a user ends nobody's session.
	if resp := eventsOn(append([]console.User{{Name: "carol", Token: "carol-token-0123456789", Role: console.RoleViewer}}, users...)); resp.StatusCode != http.StatusOK {
		t.Errorf("a session after another user was added: %s, want 200", resp.Status)
	}
	// A replica configured alike accepts it.
	if resp := eventsOn(users); resp.StatusCode != http.StatusOK {
		t.Errorf("a session on a replica with the same tokens: %s, want 200", resp.Status)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, console.Config{})
	ck := e.login(opToken)
	for _, path := range []string{"/login", "/events", "/groups", "/health", "/dead-letters", "/events/999", "/static/console.js"} {
		resp, body := e.get(path, ck)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", path, h)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") || strings.Contains(body, "javascript:") {
			t.Errorf("%s carries inline script", path)
		}
	}
}

func TestStateChangesNeedCSRFAndAnOperator(t *testing.T) {
	e := newEnv(t, console.Config{})
	e.groups()
	seq := publish(t, e.js, "default", "msg_bad", "inspection.confirmed", "bad")
	e.settled(seq)
	ck := e.login(opToken)
	token := e.csrf(ck)
	redrive := url.Values{"seq": {"1"}}
	for name, form := range map[string]url.Values{
		"missing": redrive,
		"wrong":   {"seq": {"1"}, "csrf": {"bm90LXRoZS10b2tlbg"}},
	} {
		resp := e.post("/dead-letters/redrive", ck, form)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "CSRF") {
			t.Errorf("%s CSRF token: %s %s", name, resp.Status, errorText(string(b)))
		}
	}
	// Another session's token doesn't do either.
	viewer := e.login(viewerToken)
	if resp := e.post("/dead-letters/redrive", ck, url.Values{"seq": {"1"}, "csrf": {e.csrf(viewer)}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %s, want 403", resp.Status)
	}
	// A viewer may read but not act.
	for _, path := range []string{"/dead-letters/redrive", "/dead-letters/purge", "/groups/replay"} {
		resp := e.post(path, viewer, url.Values{"seq": {"1"}, "group": {"all"}, "confirm": {"all"}, "csrf": {e.csrf(viewer)}})
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "viewer") {
			t.Errorf("viewer POST %s: %s %s", path, resp.Status, errorText(string(b)))
		}
	}
	if n := len(mustDeadLetters(t, e)); n != 1 {
		t.Fatalf("%d dead letters after refused actions, want the 1 still there", n)
	}
	// With the token, from the same origin, it works.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/dead-letters/redrive", strings.NewReader(url.Values{"seq": {"1"}, "csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp := e.do(req, ck); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST with a good token: %s, want 403", resp.Status)
	}
	req.Header.Set("Origin", e.srv.URL)
	req.Body = io.NopCloser(strings.NewReader(url.Values{"seq": {"1"}, "csrf": {token}}.Encode()))
	if resp := e.do(req, ck); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("same-origin POST with the token: %s, want 303", resp.Status)
	}
}

func mustDeadLetters(t *testing.T, e *env) []string {
	t.Helper()
	ck := e.login(viewerToken)
	return regexp.MustCompile(`<tr id="dl-(\d+)">`).FindAllString(e.page("/dead-letters", ck), -1)
}

func TestEventsPage(t *testing.T) {
	e := newEnv(t, console.Config{})
	e.groups()
	var last uint64
	for i := range 120 {
		typ := []string{"inspection.confirmed", "agent.updated", "inspection.cancelled"}[i%3]
		src := []string{"default", "acme"}[i%2]
		last = publish(t, e.js, src, fmt.Sprintf("msg_%03d", i), typ, fmt.Sprint(1000+i%7))
	}
	e.settled(last)
	ck := e.login(viewerToken)
	rows := regexp.MustCompile(`<td><a href="/events/(\d+)">`)
	seqs := func(body string) []string {
		var out []string
		for _, m := range rows.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	body := e.page("/events", ck)
	got := seqs(body)
	if len(got) != 50 || got[0] != "120" || got[49] != "71" {
		t.Fatalf("first page: %d events from %v, want 50 newest first (120…71)", len(got), got[:min(3, len(got))])
	}
	older := regexp.MustCompile(`href="(/events\?[^"]+)" id="older"`).FindStringSubmatch(body)
	if older == nil {
		t.Fatal("no Older link")
	}
	if got := seqs(e.page(strings.ReplaceAll(older[1], "&amp;", "&"), ck)); len(got) != 50 || got[0] != "70" {
		t.Errorf("second page starts at %v, want 70", got[:min(1, len(got))])
	}
	for q, want := range map[string]int{
		"type=agent.updated":                         40,
		"resource=inspection&action=cancelled":       40,
		"source=acme&type=inspection.confirmed":      20,
		"svix_id=msg_007":                            1,
		"record=1003":                                17, // i%7==3, any source, any resource
		"record=1003&source=acme":                    9,  // and odd i: 3,17,31,…
		"record=1003&source=acme&type=agent.updated": 3,
		"until=2000-01-01T00:00:00Z":                 0,
		"since=1h":                                   50, // a page
	} {
		body := e.page("/events?"+q, ck)
		if n := len(seqs(body)); n != want {
			t.Errorf("?%s: %d events, want %d", q, n, want)
		}
	}
	// The record page lists the index's events, each one of that record.
	for _, seq := range seqs(e.page("/events?record=1003&source=acme", ck)) {
		if !strings.Contains(e.page("/events/"+seq, ck), `<th>Spectora-Record-Id</th><td class="mono">1003</td>`) {
			t.Errorf("event %s listed for record 1003 is not one of its events", seq)
		}
	}
	for q, want := range map[string]string{"since=yesterday": "since", "source=*": "source", "resource=a.b&record=1": "resource", "before=x": "before"} {
		if resp, body := e.get("/events?"+q, ck); resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorText(body), want) {
			t.Errorf("?%s: %s %q, want 400 naming %s", q, resp.Status, errorText(body), want)
		}
	}
}

func TestRecordLookupWithoutTheIndexer(t *testing.T) {
	e := newEnv(t, console.Config{})
	publish(t, e.js, "default", "msg_1", "inspection.confirmed", "1234")
	body := e.page("/events?record=1234", e.login(viewerToken))
	if !strings.Contains(body, "needs the indexer group") {
		t.Error("record lookup without the index bucket doesn't say the indexer group is needed")
	}
}

func TestEventPage(t *testing.T) {
	e := newEnv(t, console.Config{JaegerURL: "http://jaeger.test:16686/"})
	e.groups()
	seq := publish(t, e.js, "default", "msg_page", "inspection.confirmed", "1234")
	bad := publish(t, e.js, "default", "msg_bad", "inspection.confirmed", "bad")
	e.settled(bad)
	// The enriched record, as the enricher caches it.
	kv, err := e.js.KeyValue(context.Background(), stream.RecordBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "default.inspection.1234",
		[]byte(`{"status":1,"path":"/v2/inspections/1234","fetched_at":"2026-11-27T10:00:00Z","body":"eyJkYXRhIjp7ImlkIjoiMTIzNCJ9fQ=="}`)); err != nil {
		t.Fatal(err)
	}
	ck := e.login(viewerToken)
	body := e.page(fmt.Sprintf("/events/%d", seq), ck)
	for _, want := range []string{
		`href="http://jaeger.test:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"`, // the traceparent's trace ID
		"Spectora-Record-Id", "msg_page", // headers
		`&#34;type&#34;: &#34;inspection.confirmed&#34;`, // the body, formatted
		`&#34;id&#34;: &#34;1234&#34;`,                   // the cached record
		"/v2/inspections/1234",
		`<td>indexer</td><td class="state-acknowledged">`,
		`<td>billing</td><td class="state-acknowledged">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("event page lacks %s", want)
		}
	}
	body = e.page(fmt.Sprintf("/events/%d", bad), ck)
	if !strings.Contains(body, `<td>billing</td><td class="state-dead-lettered">`) || !strings.Contains(body, "record bad can&#39;t be billed") {
		t.Error("a dead-lettered event's page doesn't show its dead letter")
	}
	// A group that hasn't got there yet.
	if _, err := e.js.CreateOrUpdateConsumer(context.Background(), stream.Raw, jetstream.ConsumerConfig{Durable: "late", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	// A group whose filter doesn't take the event, and one that starts after it.
	for _, cfg := range []jetstream.ConsumerConfig{
		{Durable: "agents", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "spectora.agent.*"},
		{Durable: "newer", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: bad},
	} {
		if _, err := e.js.CreateOrUpdateConsumer(context.Background(), stream.Raw, cfg); err != nil {
			t.Fatal(err)
		}
	}
	body = e.page(fmt.Sprintf("/events/%d", seq), ck)
	for _, want := range []string{`<td>late</td><td class="state-pending">`, `<td>agents</td><td class="state-not subscribed">`, `<td>newer</td><td class="state-not subscribed">`} {
		if !strings.Contains(body, want) {
			t.Errorf("event page lacks %s", want)
		}
	}
	for path, status := range map[string]int{"/events/999": 404, "/events/abc": 400, "/events/0": 400} {
		if resp, body := e.get(path, ck); resp.StatusCode != status {
			t.Errorf("GET %s: %s %q, want %d", path, resp.Status, errorText(body), status)
		}
	}
}

func TestDeadLetters(t *testing.T) {
	e := newEnv(t, console.Config{})
	e.groups()
	var last uint64
	for i := range 4 {
		last = publish(t, e.js, "default", fmt.Sprintf("msg_bad_%d", i), "inspection.confirmed", "bad")
	}
	e.settled(last)
	ck := e.login(opToken)
	csrf := e.csrf(ck)
	body := e.page("/dead-letters", ck)
	if !strings.Contains(body, "4 dead letters") || !strings.Contains(body, "record bad can&#39;t be billed") {
		t.Fatalf("dead-letters page: %s", errorText(body))
	}
	if body := e.page("/dead-letters/1", ck); !strings.Contains(body, "Redrive to billing") || !strings.Contains(body, "Spectora-Dlq-Reason") {
		t.Error("one dead letter's page lacks its redrive button or headers")
	}
	// Redrive one: it leaves the list and comes back to the group on its
	// redrive subject (where it fails again: a new dead letter).
	resp := e.post("/dead-letters/redrive", ck, url.Values{"seq": {"1"}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("redrive: %s", resp.Status)
	}
	if body := e.page("/dead-letters", ck); strings.Contains(body, `<tr id="dl-1">`) || !strings.Contains(body, "redrive dead letter 1") {
		t.Error("a redriven dead letter is still listed, or the action isn't")
	}
	raw, err := e.js.Stream(context.Background(), stream.Raw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := raw.Info(context.Background(), jetstream.WithSubjectFilter("spectora.redrive.>"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects["spectora.redrive.billing.1"]; n != 1 {
		t.Errorf("the redrive stored %d messages on spectora.redrive.billing.1, want 1", n)
	}
	// A dead letter that doesn't exist: 404, and the action is recorded.
	if resp := e.post("/dead-letters/redrive", ck, url.Values{"seq": {"999"}, "csrf": {csrf}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("redrive of a missing dead letter: %s, want 404", resp.Status)
	}
	// A selection.
	if resp := e.post("/dead-letters/redrive", ck, url.Values{"seq": {"2", "3"}, "csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("redrive of a selection: %s", resp.Status)
	}
	// All of a group needs its name typed.
	if resp := e.post("/dead-letters/redrive", ck, url.Values{"all": {"1"}, "group": {"billing"}, "csrf": {csrf}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("redrive all unconfirmed: %s, want 400", resp.Status)
	}
	natstest.Eventually(t, 10*time.Second, "redriven dead letters dead-lettered again", func() bool {
		return len(mustDeadLetters(t, e)) == 4
	})
	resp = e.post("/dead-letters/redrive", ck, url.Values{"all": {"1"}, "group": {"billing"}, "confirm": {"billing"}, "csrf": {csrf}})
	if loc, _ := url.QueryUnescape(resp.Header.Get("Location")); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "done=redriven 4") {
		t.Errorf("redrive all confirmed: %s → %q, want the 4 redriven (each once)", resp.Status, loc)
	}
	// Purge needs its confirmation too.
	if resp := e.post("/dead-letters/purge", ck, url.Values{"group": {"*"}, "confirm": {"yes"}, "csrf": {csrf}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("purge with the wrong confirmation: %s, want 400", resp.Status)
	}
	natstest.Eventually(t, 10*time.Second, "every dead letter back", func() bool { return len(mustDeadLetters(t, e)) == 4 })
	if resp := e.post("/dead-letters/purge", ck, url.Values{"group": {"*"}, "confirm": {"all"}, "csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("purge: %s", resp.Status)
	}
	body = e.page("/dead-letters", ck)
	if !strings.Contains(body, "0 dead letters") {
		t.Error("dead letters left after purge")
	}
	// Every action, with who did it.
	for _, want := range []string{"redrive dead letter 1", "redrive dead letter 999", "redrive dead letter 2, 3", "redrive all dead letters of billing", "purge dead letters of all"} {
		if !regexp.MustCompile(`<td>alice</td><td>` + regexp.QuoteMeta(want)).MatchString(body) {
			t.Errorf("the action log lacks alice's %q", want)
		}
	}
	if !strings.Contains(e.logs.String(), `msg="console action" component=console user=alice role=operator action="purge dead letters of all" result="purged 4"`) {
		t.Errorf("the log lacks the purge:\n%s", e.logs)
	}
	actions := e.c.Actions()
	if len(actions) != 5 || actions[0].User != "alice" || actions[0].Time.IsZero() {
		t.Errorf("actions: %+v", actions)
	}
}

func TestGroupsAndReplay(t *testing.T) {
	e := newEnv(t, console.Config{})
	e.groups()
	var last uint64
	for i := range 10 {
		last = publish(t, e.js, "default", fmt.Sprintf("msg_%d", i), "agent.updated", "7")
	}
	e.settled(last)
	ck := e.login(opToken)
	body := e.page("/groups", ck)
	for _, want := range []string{`<tr id="group-billing">`, `<tr id="group-indexer">`, "<td>SPECTORA</td><td>10</td>", "10 of 10 delivered"} {
		if !strings.Contains(body, want) {
			t.Errorf("groups page lacks %s", want)
		}
	}
	csrf := e.csrf(ck)
	for name, form := range map[string]url.Values{
		"unconfirmed":    {"group": {"SPECTORA/billing"}, "from_seq": {"3"}},
		"no start":       {"group": {"SPECTORA/billing"}, "confirm": {"yes"}},
		"both starts":    {"group": {"SPECTORA/billing"}, "confirm": {"yes"}, "from_seq": {"3"}, "since": {"1h"}},
		"not a group":    {"group": {"billing"}, "confirm": {"yes"}, "from_seq": {"3"}},
		"bad since":      {"group": {"SPECTORA/billing"}, "confirm": {"yes"}, "since": {"last week"}},
		"bad sequence":   {"group": {"SPECTORA/billing"}, "confirm": {"yes"}, "from_seq": {"-1"}},
		"another stream": {"group": {"SPECTORA_DLQ/billing"}, "confirm": {"yes"}, "from_seq": {"3"}},
	} {
		form.Set("csrf", csrf)
		if resp := e.post("/groups/replay", ck, form); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("replay %s: %s, want 400", name, resp.Status)
		}
	}
	if resp := e.post("/groups/replay", ck, url.Values{"group": {"SPECTORA/nobody"}, "confirm": {"yes"}, "from_seq": {"3"}, "csrf": {csrf}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("replay of a group that doesn't exist: %s, want 404", resp.Status)
	}
	resp := e.post("/groups/replay", ck, url.Values{"group": {"SPECTORA/billing"}, "confirm": {"yes"}, "from_seq": {"3"}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("replay: %s", resp.Status)
	}
	// The group handles 3…10 again.
	natstest.Eventually(t, 10*time.Second, "billing replayed from 3", func() bool { return e.billed.Load() == 18 })
	loc, _ := url.QueryUnescape(resp.Header.Get("Location"))
	if !strings.Contains(loc, "replay billing on SPECTORA from sequence 3: restarts at sequence 3") {
		t.Errorf("replay answer %q", loc)
	}
}

func TestHealthPage(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spectora_gateway_requests_total"}, []string{"outcome", "source"})
	last := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spectora_gateway_last_stored_timestamp_seconds"}, []string{"source"})
	reg.MustRegister(requests, last)
	// A second gateway, read over HTTP like a replica.
	reg2 := prometheus.NewRegistry()
	requests2 := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spectora_gateway_requests_total"}, []string{"outcome", "source"})
	reg2.MustRegister(requests2)
	metrics := httptest.NewServer(promhttp.HandlerFor(reg2, promhttp.HandlerOpts{}))
	defer metrics.Close()

	e := newEnv(t, console.Config{Gatherer: reg, MetricsURLs: []string{metrics.URL + "/metrics"}})
	e.groups()
	seq := publish(t, e.js, "acme", "msg_1", "inspection.confirmed", "bad")
	e.settled(seq)
	last.WithLabelValues("default").Set(float64(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC).Unix()))
	ck := e.login(viewerToken)
	e.page("/health", ck) // the first sample
	time.Sleep(5100 * time.Millisecond)
	requests.WithLabelValues("unauthorized", "default").Add(60)
	requests2.WithLabelValues("unavailable", "default").Add(120)
	requests2.WithLabelValues("accepted", "default").Add(120)
	body := e.page("/health", ck)
	// 60 and 120 over a little more than 5.1 s.
	for what, want := range map[string][2]float64{"401 (unauthorized)": {10, 12}, "503 (JetStream unavailable or full)": {20, 24}} {
		m := regexp.MustCompile(regexp.QuoteMeta("<th>"+what+"</th><td>") + `([0-9.]+)/s`).FindStringSubmatch(body)
		var rate float64
		if m != nil {
			_, _ = fmt.Sscan(m[1], &rate)
		}
		if rate < want[0] || rate > want[1] {
			t.Errorf("health page: %s at %v/s, want %v–%v", what, rate, want[0], want[1])
		}
	}
	for _, want := range []string{
		"Read from 2 gateways",
		"<td>default</td><td>2026-11-27 09:00:00</td>", // from the gateway metric
		"<td>acme</td>",                                // from the stream
		"1 dead letter</a> · billing: 1",
		"The reconciler has not run here",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("health page lacks %s", want)
		}
	}
	// The reconciler's checkpoints, once there are some.
	kv, err := e.js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: stream.ReconcileBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "default.inspection", []byte(`{"through":"2026-11-27T08:00:00Z","ran_at":"2026-11-27T08:05:00Z","listed":12,"emitted":3}`)); err != nil {
		t.Fatal(err)
	}
	if body := e.page("/health", ck); !strings.Contains(body, "<td>default.inspection</td><td>2026-11-27 08:00:00</td><td>2026-11-27 08:05:00</td><td>12</td>") {
		t.Error("health page lacks the reconciler's checkpoint")
	}
}

func TestConfigRefusals(t *testing.T) {
	s := natstest.Server(t)
	_, js := natstest.JetStream(t, s)
	for name, cfg := range map[string]console.Config{
		"no token":        {},
		"short token":     {Users: []console.User{{Name: "a", Token: "short", Role: console.RoleOperator}}},
		"bad role":        {Users: []console.User{{Name: "a", Token: opToken, Role: "root"}}},
		"twice named":     {Users: []console.User{{Name: "a", Token: opToken, Role: console.RoleOperator}, {Name: "a", Token: viewerToken, Role: console.RoleViewer}}},
		"shared token":    {Users: []console.User{{Name: "a", Token: opToken, Role: console.RoleOperator}, {Name: "b", Token: opToken, Role: console.RoleViewer}}},
		"bad jaeger URL":  {Users: users, JaegerURL: "jaeger:16686"},
		"bad metrics URL": {Users: users, MetricsURLs: []string{"gateway:9090"}},
	} {
		if _, err := console.New(cfg, js); !errors.Is(err, console.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	got, err := console.ParseTokens("alice=" + opToken + ", bob:viewer=" + viewerToken)
	if err != nil || len(got) != 2 || got[0] != users[0] || got[1] != users[1] {
		t.Errorf("ParseTokens: %+v, %v", got, err)
	}
	if _, err := console.ParseTokens("alice"); !errors.Is(err, console.ErrConfig) || strings.Contains(err.Error(), opToken) {
		t.Errorf("ParseTokens of a pair without a token: %v", err)
	}
	if _, err := console.ParseTokens("alice:" + opToken); err == nil || strings.Contains(err.Error(), opToken[4:]) {
		t.Errorf("ParseTokens error shows the token: %v", err)
	}
}

func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "admin-token")
	token, created, err := console.TokenFile(path)
	if err != nil || !created || len(token) != 64 {
		t.Fatalf("first start: %q %v %v", token, created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	again, created, err := console.TokenFile(path)
	if err != nil || created || again != token {
		t.Errorf("second start: %q %v %v, want the same token", again, created, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := console.TokenFile(path); !errors.Is(err, console.ErrConfig) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a token file others can read: %v", err)
	}
}

// Without a record ID the page reads backwards, at most 5,000 events a
// page; "Older" goes on exactly where it stopped.
func TestEventsPageScansBackwardsWithinALimit(t *testing.T) {
	e := newEnv(t, console.Config{})
	for i := 1; i <= 6000; i++ {
		typ := "client.updated"
		if i == 3 || i == 5500 {
			typ = "agent.updated"
		}
		if _, err := e.js.PublishMsgAsync(natstest.EventFrom("default", fmt.Sprintf("msg_%d", i), typ, "1"), jetstream.WithMsgID(fmt.Sprintf("msg_%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing timed out")
	}
	ck := e.login(viewerToken)
	seqs := func(body string) []string {
		var out []string
		for _, m := range regexp.MustCompile(`<td><a href="/events/(\d+)">`).FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	older := func(body string) string {
		m := regexp.MustCompile(`href="(/events\?[^"]+)" id="older"`).FindStringSubmatch(body)
		if m == nil {
			return ""
		}
		return strings.ReplaceAll(m[1], "&amp;", "&")
	}
	body := e.page("/events?type=agent.updated", ck)
	if got := seqs(body); len(got) != 1 || got[0] != "5500" || !strings.Contains(body, "1 shown, 5000 read") {
		t.Fatalf("first page: %v, want 5500 alone after reading 5,000", got)
	}
	next := older(body)
	if !strings.Contains(next, "before=1001") {
		t.Fatalf("Older link %q, want before=1001", next)
	}
	body = e.page(next, ck)
	if got := seqs(body); len(got) != 1 || got[0] != "3" || older(body) != "" {
		t.Errorf("second page: %v (older %q), want 3 and the end", got, older(body))
	}
	// Unfiltered pages follow each other without a gap or a repeat.
	seen := map[string]bool{}
	path := "/events"
	for range 3 {
		body := e.page(path, ck)
		for _, s := range seqs(body) {
			if seen[s] {
				t.Fatalf("event %s on two pages", s)
			}
			seen[s] = true
		}
		path = older(body)
	}
	for i := 6000; i > 5850; i-- {
		if !seen[fmt.Sprint(i)] {
			t.Fatalf("event %d missing from the first three pages", i)
		}
	}
}

// Before the gateway first starts there is no stream: the pages say so.
func TestPagesBeforeAnyStream(t *testing.T) {
	s := natstest.Server(t)
	_, js := natstest.JetStream(t, s)
	c, err := console.New(console.Config{Users: users}, js)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	e := &env{t: t, js: js, srv: srv, c: c}
	ck := e.login(viewerToken)
	if body := e.page("/events", ck); !strings.Contains(body, "stream doesn&#39;t exist") {
		t.Errorf("events page without a stream: %s", errorText(body))
	}
	for _, path := range []string{"/groups", "/dead-letters", "/health"} {
		e.page(path, ck)
	}
	if resp, _ := e.get("/events/1", ck); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an event without a stream: %s, want 404", resp.Status)
	}
}

// A script looping on the pages gets 429 past ADMIN_PAGE_RATE, per user.
func TestPageRate(t *testing.T) {
	e := newEnv(t, console.Config{PageRate: 2})
	alice, bob := e.login(opToken), e.login(viewerToken)
	limited := 0
	for range 10 {
		resp, _ := e.get("/groups", alice)
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if resp.Header.Get("Retry-After") != "1" {
				t.Error("429 without Retry-After")
			}
		}
	}
	if limited < 5 {
		t.Errorf("%d of 10 quick pages refused at 2 a second (burst 4), want at least 5", limited)
	}
	if resp, _ := e.get("/groups", bob); resp.StatusCode != http.StatusOK {
		t.Errorf("another user: %s, want 200 (budgets are per user)", resp.Status)
	}
}
