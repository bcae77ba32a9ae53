package main

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/spectora-stream/spectora-stream/internal/natstest"
)

// runCLI runs the command line as main does and returns the exit status,
// stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	errFile, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	var code int
	out := stdoutOf(t, func() error { code = runMain(args, errFile); return nil })
	errText, _ := os.ReadFile(errFile.Name())
	return code, out, string(errText)
}

// A bad value, a bad argument or no command at all: one line on stderr
// naming the setting, the value and what is accepted, with where to read
// more, and exit status 2, never the whole help.
func TestUsageErrorsAreOneLineNamingTheSetting(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"bad duration in a variable", map[string]string{"CONSUMER_BACKOFF": "abc"}, []string{"consumers"},
			[]string{"CONSUMER_BACKOFF", `"abc"`, "duration", "see spectora-stream consumers --help"}},
		{"size with a unit", map[string]string{"HTTP_BODY_LIMIT": "1MB"}, []string{"gateway"}, []string{"HTTP_BODY_LIMIT", `"1MB"`}},
		{"bad argument", nil, []string{"dlq", "show", "abc"}, []string{"SEQ", `"abc"`, "see spectora-stream dlq show --help"}},
		{"no command", nil, nil, []string{"a command is needed", "serve", "see spectora-stream --help"}},
		{"zero body limit", map[string]string{"HTTP_BODY_LIMIT": "0", "SPECTORA_WEBHOOK_SECRET": secret}, []string{"gateway"},
			[]string{"HTTP_BODY_LIMIT 0", "at least 1024", "see spectora-stream gateway --help"}},
		{"negative body limit", map[string]string{"HTTP_BODY_LIMIT": "-1", "SPECTORA_WEBHOOK_SECRET": secret}, []string{"gateway"},
			[]string{"HTTP_BODY_LIMIT -1", "at least 1024"}},
		{"zero concurrency", map[string]string{"CONSUMER_CONCURRENCY": "0"}, []string{"consumers"}, []string{"CONSUMER_CONCURRENCY 0", "1 to 1024"}},
		{"no secret", map[string]string{"SPECTORA_WEBHOOK_SECRET": ""}, []string{"gateway"}, []string{"SPECTORA_WEBHOOK_SECRET"}},
		{"unknown flag", nil, []string{"serve", "--groups", "audit"}, []string{"unknown flag --groups", "see spectora-stream serve --help"}},
		{"latency without a subscriber", nil, []string{"bench", "--rate", "100"}, []string{"--enriched-from", "--rate"}},
		{"latency without a rate", nil, []string{"bench", "--enriched-from", "nats://127.0.0.1:1"}, []string{"positive --rate"}},
		{"API key pasted without a name", map[string]string{"SPECTORA_API_SOURCES": "topsecretAB=="}, []string{"consumers"},
			[]string{"SPECTORA_API_SOURCES", "entry 1", "source name"}},
		{"API source without a key", map[string]string{"SPECTORA_API_SOURCES": "acme=k1;beta="}, []string{"consumers"},
			[]string{"SPECTORA_API_SOURCES", `source "beta" has no API key`}},
		{"API key for the default source", map[string]string{"SPECTORA_API_SOURCES": "default=k1"}, []string{"consumers"},
			[]string{"SPECTORA_API_SOURCES", "SPECTORA_API_TOKEN"}},
		{"API source twice", map[string]string{"SPECTORA_API_SOURCES": "acme=k1;acme=k2", "SPECTORA_WEBHOOK_SECRET": secret}, []string{"serve"},
			[]string{"SPECTORA_API_SOURCES", `"acme" appears twice`}},
		{"API source with a bad base URL", map[string]string{"SPECTORA_API_SOURCES": "acme=topsecret ftp://example.com"}, []string{"consumers"},
			[]string{"SPECTORA_API_SOURCES", `source "acme"`, "base URL"}},
		{"reconcile without a key", map[string]string{"SPECTORA_API_TOKEN": ""}, []string{"reconcile"},
			[]string{"SPECTORA_API_TOKEN", "SPECTORA_API_SOURCES", "API key"}},
		{"reconcile since a word", map[string]string{"SPECTORA_API_TOKEN": "topsecret"}, []string{"reconcile", "--since", "yesterday"},
			[]string{"--since", "72h", "RFC 3339"}},
		{"reconcile since the future", map[string]string{"SPECTORA_API_TOKEN": "topsecret"}, []string{"reconcile", "--since", "2999-01-01T00:00:00Z"},
			[]string{"--since", "future"}},
		{"bad rule", map[string]string{"RECONCILE_RULES": "published=attributes.published_at"}, []string{"consumers"},
			[]string{"RECONCILE_RULES", "resource.action"}},
		{"reconciler without a key", map[string]string{"RECONCILE_INTERVAL": "15m", "SPECTORA_API_TOKEN": ""}, []string{"consumers"},
			[]string{"RECONCILE_INTERVAL", "SPECTORA_API_TOKEN"}},
		{"reconciler too often", map[string]string{"RECONCILE_INTERVAL": "5s"}, []string{"consumers"},
			[]string{"RECONCILE_INTERVAL 5s", "at least 1m"}},
		{"short console token", map[string]string{"ADMIN_TOKEN": "short", "SPECTORA_WEBHOOK_SECRET": secret}, []string{"serve"},
			[]string{"ADMIN_TOKEN", "at least 16"}},
		{"console token without a name", map[string]string{"ADMIN_TOKENS": "sixteen-characters-or-more"}, []string{"console"},
			[]string{"ADMIN_TOKENS", "name=token"}},
		{"console viewer role misspelt", map[string]string{"ADMIN_TOKENS": "bob:reader=sixteen-characters-or-more"}, []string{"console"},
			[]string{"ADMIN_TOKENS", `role "reader"`, "viewer or operator"}},
		{"console Jaeger URL without a scheme", map[string]string{"JAEGER_UI_URL": "jaeger:16686", "ADMIN_TOKEN": "sixteen-characters-or-more"}, []string{"console"},
			[]string{"JAEGER_UI_URL", "http"}},
		{"list path with a query", map[string]string{"SPECTORA_API_TOKEN": "topsecret", "SPECTORA_API_LIST_PATHS": "client=/v2/contacts?all=1"}, []string{"consumers"},
			[]string{"SPECTORA_API_LIST_PATHS", "client"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runCLI(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d lines on stderr, want one:\n%s", len(lines), stderr)
			}
			for _, w := range tt.wants {
				if !strings.Contains(lines[0], w) {
					t.Errorf("%q lacks %q", lines[0], w)
				}
			}
			if strings.Contains(stderr, "topsecret") {
				t.Errorf("an API key in the error: %s", stderr)
			}
		})
	}
}

func TestVersionAndHelpExitZero(t *testing.T) {
	code, out, _ := runCLI(t, "--version")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
	code, out, _ = runCLI(t, "dlq", "list", "--help")
	if code != 0 || !strings.Contains(out, "--nats-url") {
		t.Fatalf("dlq list --help: exit %d\n%s", code, out)
	}
	// An operator command's help lists its own flags and says what it does
	// without NATS_URL: connect to a running serve, never start a server.
	for _, serverOnly := range []string{"embedded JetStream server (", "--nats-stream-replicas", "--http-addr", "--nats-embedded-auth", "--consumer-groups"} {
		if strings.Contains(out, serverOnly) {
			t.Errorf("dlq list --help mentions %q", serverOnly)
		}
	}
	if !strings.Contains(out, "a running serve") {
		t.Errorf("dlq list --help doesn't say it connects to a running serve:\n%s", out)
	}
}

// send prints the answer on one line, and exits 3 on anything but 2xx.
func TestSendPrintsOneLineAndExits3OnRefusal(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"stream":"SPECTORA","seq":1}` + "\n"))
	}))
	defer srv.Close()
	t.Setenv("SPECTORA_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	code, out, _ := runCLI(t, "send", "--spectora-gateway-url", srv.URL)
	if code != 0 || out != "200 OK {\"stream\":\"SPECTORA\",\"seq\":1}\n" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	status = http.StatusUnauthorized
	code, out, stderr := runCLI(t, "send", "--spectora-gateway-url", srv.URL)
	if code != exitNon2xx || !strings.HasPrefix(out, "401 Unauthorized ") || !strings.Contains(stderr, "gateway answered 401") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

// A taken NATS_LISTEN port is reported as such, with nats-server's own
// reason, instead of a guess after the start timeout.
func TestEmbeddedBindErrorIsReportedAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("SPECTORA_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	start := time.Now()
	code, _, stderr := runCLI(t, "gateway", "--nats-listen", ln.Addr().String(), "--nats-store-dir", t.TempDir(),
		"--http-addr", natstest.FreeAddr(t), "--metrics-addr", natstest.FreeAddr(t))
	t.Logf("reported after %s", time.Since(start).Round(time.Millisecond))
	last := strings.TrimSpace(stderr)
	last = last[strings.LastIndex(last, "\n")+1:]
	if code != exitFailure || !strings.Contains(last, "NATS_LISTEN") || !strings.Contains(last, "address already in use") {
		t.Fatalf("exit %d: %s", code, last)
	}
}

// Logs are text on a terminal and JSON elsewhere; nats-server's start-up
// banner is at debug.
func TestLogFormatAndServerChatter(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	log := logFlags{Level: "info", Format: "auto"}.logger(f)
	log.Info("hello")
	b, _ := os.ReadFile(f.Name())
	if !bytes.HasPrefix(b, []byte(`{"time"`)) {
		t.Fatalf("auto on a file: %s, want JSON", b)
	}
	var buf bytes.Buffer
	text := slog.New(slog.NewTextHandler(&buf, nil))
	text.Info("x")
	if !strings.Contains(buf.String(), "msg=x") {
		t.Fatal(buf.String())
	}
	dev, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if !isTerminal(dev) || isTerminal(f) {
		t.Fatal("isTerminal: /dev/null is a character device, a file is not")
	}
}

// Every variable any command reads is in docs/configuration.md, and every
// variable named in its tables is one a command reads.
func TestConfigurationDocCoversEveryVariable(t *testing.T) {
	var c cli
	parser, err := kong.New(&c, kong.Vars{"version": "test"})
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			for _, env := range f.Envs {
				read[env] = true
			}
		}
		for _, child := range n.Children {
			walk(child)
		}
	}
	walk(parser.Model.Node)
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`([A-Z0-9_]+)`").FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
		}
	}
	for env := range read {
		if !documented[env] {
			t.Errorf("%s is read by a command but not in docs/configuration.md's tables", env)
		}
	}
	for env := range documented {
		if !read[env] {
			t.Errorf("docs/configuration.md documents %s, which no command reads", env)
		}
	}
	if len(read) < 50 {
		t.Errorf("found only %d variables in the command line model", len(read))
	}
}
