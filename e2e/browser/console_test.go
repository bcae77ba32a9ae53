//go:build e2e

// Package browser drives the operations console in a real headless
// Chromium (Debian's chromium package) over the DevTools protocol, against
// the real binary: serve on its embedded JetStream, the simulator's API, and
// a real Jaeger v2. It is a module of its own so that its DevTools client
// stays out of the main module's dependencies.
//
// Screenshots go to a temporary directory, or to the directory named by
// SPECTORA_SCREENSHOTS (the docs' ones: SPECTORA_SCREENSHOTS=docs/console,
// relative to the repository root).
package browser

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/spectora-stream/spectora-stream/internal/e2etest"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
)

const (
	secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	token  = "browser-test-operator-token-42"
)

// chromium is the browser's path: CHROME_BIN, or Debian's chromium.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROME_BIN"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	e2etest.Need(t, false, "no chromium on PATH (apt-get install chromium; .ci/run installs it)")
	return ""
}

type system struct {
	t       *testing.T
	bin     string
	dir     string
	jaeger  e2etest.Jaeger
	api     string
	sim     *exec.Cmd
	gateway string
	console string
	signer  *webhook.Signer
}

func startSystem(t *testing.T) *system {
	t.Helper()
	s := &system{t: t, dir: t.TempDir(), api: natstest.FreeAddr(t), gateway: natstest.FreeAddr(t), console: natstest.FreeAddr(t)}
	var err error
	if s.bin, err = e2etest.Build(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	s.jaeger = e2etest.StartJaeger(t)
	s.startSim()
	ops := natstest.FreeAddr(t)
	e2etest.StartProcess(t, "serve", s.bin, []string{
		"SPECTORA_WEBHOOK_SECRET=" + secret, "NATS_STORE_DIR=" + filepath.Join(s.dir, "nats"), "NATS_LISTEN=off",
		"HTTP_ADDR=" + s.gateway, "METRICS_ADDR=" + ops, "AUDIT_LOG=" + filepath.Join(s.dir, "audit.jsonl"),
		"CONSUMER_GROUPS=enricher,audit,indexer", "CONSUMER_MAX_DELIVER=2", "CONSUMER_BACKOFF=200ms",
		"SPECTORA_API_URL=http://" + s.api, "SPECTORA_API_TOKEN=sim-token",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + s.jaeger.OTLPHTTP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_BSP_SCHEDULE_DELAY=200",
		"ADMIN_ADDR=" + s.console, "ADMIN_TOKENS=ops=" + token, "JAEGER_UI_URL=http://" + s.jaeger.Query,
		"ADMIN_PAGE_RATE=0", // the test's polling loads pages faster than a person
	}, "serve")
	e2etest.WaitHTTP(t, "serve", "http://"+ops+"/readyz")
	e2etest.WaitHTTP(t, "the console", "http://"+s.console+"/healthz")
	if s.signer, err = webhook.NewSigner(secret); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *system) startSim() {
	s.sim = e2etest.StartProcess(s.t, "sim", s.bin, []string{"SPECTORA_API_TOKEN=sim-token", "SIM_RATE=0", "SIM_API_ADDR=" + s.api, "SIM_API_LATENCY=0s"}, "sim")
	e2etest.WaitHTTP(s.t, "the simulator", "http://"+s.api+"/healthz")
}

func (s *system) stopSim() {
	_ = s.sim.Process.Signal(syscall.SIGTERM)
	_ = s.sim.Wait()
}

// send posts one signed webhook and returns its svix-id.
func (s *system) send(typ, id string) string {
	s.t.Helper()
	msgID := webhook.NewMessageID()
	body := webhook.Body(typ, id, nil)
	hdr, err := s.signer.Headers(msgID, time.Now(), body)
	if err != nil {
		s.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.gateway+"/webhooks/spectora", strings.NewReader(string(body)))
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("POST %s %s: %s", typ, id, resp.Status)
	}
	return msgID
}

// browser is a headless Chromium tab; dialogs (the console's confirmations)
// are accepted.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1360, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

type shots struct {
	t   *testing.T
	dir string
}

func newShots(t *testing.T) shots {
	dir := os.Getenv("SPECTORA_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join(e2etest.Root(), dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return shots{t: t, dir: dir}
}

// take saves a screenshot of the whole page as name.png.
func (s shots) take(ctx context.Context, name string) {
	s.t.Helper()
	png := value(s.t, ctx, "screenshot "+name, chromedp.FullScreenshot(100)) // 100 is PNG; less is JPEG
	if err := os.WriteFile(filepath.Join(s.dir, name+".png"), png, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("screenshot %s.png (%d bytes)", name, len(png))
}

// do runs steps in the tab, failing the test on an error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs one action and returns what it read.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func id(s string) chromedp.ID   { return chromedp.ID(s) }
func css(s string) chromedp.CSS { return chromedp.CSS(s) }

func TestConsoleInChromium(t *testing.T) {
	s := startSystem(t)
	shot := newShots(t)
	// Traffic: two events for inspection 1234, others around them.
	s.send("inspection.created", "1234")
	s.send("agent.updated", "77")
	s.send("inspection.confirmed", "1234")
	for i := range 6 {
		s.send("client.updated", fmt.Sprint(500+i))
	}
	// Once the audit group logged those nine, the API goes down:
	// inspection 999's enrichment fails twice and is dead-lettered; the API
	// comes back later.
	natstest.Eventually(t, 30*time.Second, "the first nine events enriched and audited", func() bool {
		b, _ := os.ReadFile(filepath.Join(s.dir, "audit.jsonl"))
		return strings.Count(string(b), "\n") >= 9
	})
	s.stopSim()
	s.send("inspection.cancelled", "999")

	ctx := browser(t)
	base := "http://" + s.console

	t.Run("refused without a token", func(t *testing.T) {
		do(t, ctx, "open the events page", chromedp.Navigate(base+"/events?record=1234"), chromedp.WaitVisible(id("token")))
		if url := value(t, ctx, "location", chromedp.Location()); !strings.Contains(url, "/login?next=") {
			t.Fatalf("without a session the browser is at %s, want the login page", url)
		}
		do(t, ctx, "log in with a wrong token",
			chromedp.SendKeys(id("token"), "not-the-token-at-all"), chromedp.Click(id("login")), chromedp.WaitVisible(id("error")))
		if text := value(t, ctx, "error", chromedp.Text(id("error"))); !strings.Contains(text, "not one of the console's tokens") {
			t.Errorf("wrong token: %q", text)
		}
		if n := value(t, ctx, "cookies", chromedp.Evaluate[int](`document.cookie.length`)); n != 0 {
			t.Error("a wrong token left a cookie")
		}
		shot.take(ctx, "login")
	})

	t.Run("log in and find an event by record ID", func(t *testing.T) {
		do(t, ctx, "log in",
			chromedp.Navigate(base+"/login?next=%2Fevents"), chromedp.WaitVisible(id("token")),
			chromedp.SendKeys(id("token"), token), chromedp.Click(id("login")), chromedp.WaitVisible(id("events")))
		if who := value(t, ctx, "who", chromedp.Text(css("header .who span"))); who != "ops (operator)" {
			t.Fatalf("logged in as %q", who)
		}
		shot.take(ctx, "events")
		var rows []string
		natstest.Eventually(t, 20*time.Second, "both events of inspection 1234 indexed", func() bool {
			do(t, ctx, "search record 1234",
				chromedp.Navigate(base+"/events"), chromedp.WaitVisible(id("record")),
				chromedp.SendKeys(id("record"), "1234"), chromedp.Click(id("search")),
				// The answer's field carries the value as an attribute; the
				// page typed into has it only as a property.
				chromedp.WaitVisible(css(`#record[value="1234"]`)), chromedp.WaitVisible(id("events")))
			rows = value(t, ctx, "rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#events tbody tr")].map(r => r.innerText)`))
			return len(rows) == 2
		})
		if !strings.Contains(rows[0], "inspection.confirmed") || !strings.Contains(rows[1], "inspection.created") {
			t.Errorf("record 1234's events, newest first: %q", rows)
		}
		shot.take(ctx, "events-by-record")
	})

	t.Run("an event links to its trace", func(t *testing.T) {
		do(t, ctx, "open the newest event of 1234", chromedp.Click(css("#events tbody tr:first-child a")), chromedp.WaitVisible(id("groups")))
		link := value(t, ctx, "trace link", chromedp.AttributeValue(id("trace"), "href"))
		prefix := "http://" + s.jaeger.Query + "/trace/"
		if !link.Exists || !strings.HasPrefix(link.Value, prefix) || len(link.Value) != len(prefix)+32 {
			t.Fatalf("trace link %q, want %s<trace id>", link.Value, prefix)
		}
		traceID := strings.TrimPrefix(link.Value, prefix)
		// Jaeger built here serves no UI: its API must hold that trace,
		// with the gateway's and the groups' spans.
		natstest.Eventually(t, 30*time.Second, "the trace in Jaeger", func() bool {
			traces, err := e2etest.Traces("http://" + s.jaeger.Query + "/api/traces/" + traceID)
			if err != nil || len(traces) != 1 {
				return false
			}
			ops := map[string]bool{}
			for _, sp := range traces[0].Spans {
				ops[sp.OperationName] = true
			}
			return ops["verify webhook"] && ops["process spectora.inspection.confirmed"] && ops["process spectora.enriched.inspection.confirmed"]
		})
		states := value(t, ctx, "group states", chromedp.Evaluate[map[string]string](
			`Object.fromEntries([...document.querySelectorAll("#groups tbody tr")].map(r => [r.cells[1].innerText, r.cells[2].innerText]))`))
		for _, g := range []string{"enricher", "indexer", "audit"} {
			if states[g] != "acknowledged" {
				t.Errorf("group %s: %q on the event page, want acknowledged", g, states[g])
			}
		}
		if rec := value(t, ctx, "record", chromedp.Text(id("record"))); !strings.Contains(rec, `"1234"`) {
			t.Errorf("the enriched record isn't 1234's:\n%s", rec)
		}
		shot.take(ctx, "event")
	})

	t.Run("redrive a dead letter", func(t *testing.T) {
		natstest.Eventually(t, 30*time.Second, "inspection 999 dead-lettered", func() bool {
			do(t, ctx, "dead letters", chromedp.Navigate(base+"/dead-letters"), chromedp.WaitVisible(id("deadletters")))
			return strings.Contains(value(t, ctx, "list", chromedp.Text(css("#deadletters tbody"))), "enricher")
		})
		shot.take(ctx, "dead-letters")
		s.startSim() // the API is back
		do(t, ctx, "select all and redrive",
			chromedp.Click(css("input[data-select-all]")), chromedp.Click(id("redrive")), chromedp.WaitVisible(id("flash")))
		flash := value(t, ctx, "flash", chromedp.Text(id("flash")))
		rows := value(t, ctx, "rows", chromedp.Evaluate[int](`document.querySelectorAll("#deadletters tbody tr[id^=dl-]").length`))
		if !strings.HasPrefix(flash, "redriven 1") || rows != 0 {
			t.Fatalf("after the redrive: %q, %d dead letters listed", flash, rows)
		}
		if log := value(t, ctx, "action log", chromedp.Text(id("actions"))); !strings.Contains(log, "ops") || !strings.Contains(log, "redrive dead letter") {
			t.Errorf("the action log lacks the redrive by ops:\n%s", log)
		}
		// Enriched this time: the event page finds its enriched copy, and
		// it doesn't come back to the dead letters.
		natstest.Eventually(t, 20*time.Second, "999 enriched after the redrive", func() bool {
			do(t, ctx, "find 999", chromedp.Navigate(base+"/events?record=999"), chromedp.WaitVisible(id("events")),
				chromedp.Click(css("#events tbody tr:first-child a")), chromedp.WaitVisible(id("groups")))
			return strings.Contains(value(t, ctx, "page", chromedp.Evaluate[string](`document.body.innerText`)), "Enriched copy: SPECTORA_ENRICHED #")
		})
		do(t, ctx, "dead letters again", chromedp.Navigate(base+"/dead-letters"), chromedp.WaitVisible(id("deadletters")))
		if n := value(t, ctx, "rows", chromedp.Evaluate[int](`document.querySelectorAll("#deadletters tbody tr[id^=dl-]").length`)); n != 0 {
			t.Errorf("%d dead letters after the redrive was enriched", n)
		}
	})

	t.Run("replay a group", func(t *testing.T) {
		do(t, ctx, "groups page", chromedp.Navigate(base+"/groups"), chromedp.WaitVisible(id("streams")))
		shot.take(ctx, "groups")
		do(t, ctx, "replay audit from 1",
			chromedp.SetValue(id("replay-group"), "SPECTORA_ENRICHED/audit"), chromedp.SendKeys(id("replay-seq"), "1"),
			chromedp.Click(id("replay-confirm")), chromedp.Click(id("replay-submit")), chromedp.WaitVisible(id("flash")))
		if flash := value(t, ctx, "flash", chromedp.Text(id("flash"))); !strings.Contains(flash, "replay audit on SPECTORA_ENRICHED from sequence 1: restarts at sequence 1") {
			t.Errorf("replay: %q", flash)
		}
	})

	t.Run("health", func(t *testing.T) {
		do(t, ctx, "health page", chromedp.Navigate(base+"/health"), chromedp.WaitVisible(id("sources")))
		if text := value(t, ctx, "sources", chromedp.Text(id("sources"))); !strings.Contains(text, "default") {
			t.Errorf("health: no last webhook for source default:\n%s", text)
		}
		shot.take(ctx, "health")
	})

	t.Run("log out", func(t *testing.T) {
		do(t, ctx, "log out", chromedp.Click(css("header .who button")), chromedp.WaitVisible(id("token")),
			chromedp.Navigate(base+"/groups"), chromedp.WaitVisible(id("token")))
		if url := value(t, ctx, "location", chromedp.Location()); !strings.Contains(url, "/login") {
			t.Errorf("after logging out, /groups is at %s", url)
		}
	})
}
