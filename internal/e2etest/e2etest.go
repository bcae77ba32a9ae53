// Package e2etest holds what the end-to-end suites share: the rule that a
// missing prerequisite skips (or, with SPECTORA_REQUIRE_E2E=1, fails), the
// binary built once, real child processes, and a real Jaeger v2 with its
// query API. The suites live in e2e/ (the compose stack, Jaeger) and in
// e2e/browser (a module of its own, for its DevTools client).
package e2etest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/natstest"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Need skips the test, or with SPECTORA_REQUIRE_E2E=1 fails it, when what
// it needs is missing; it never passes because something was absent.
func Need(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf("\n\n!!! %s cannot run: %s\n\n", t.Name(), why)
	if os.Getenv("SPECTORA_REQUIRE_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Build builds the spectora-stream binary into dir and returns its path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "spectora-stream")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/spectora-stream")
	cmd.Dir = Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// JaegerBinary returns JAEGER_BIN, or the binary tools/jaeger/build.sh
// caches (e2e/run builds it first).
func JaegerBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("JAEGER_BIN")
	if bin == "" {
		out, err := exec.Command("bash", filepath.Join(Root(), "tools", "jaeger", "build.sh"), "--path").Output()
		bin = strings.TrimSpace(string(out))
		Need(t, err == nil, fmt.Sprintf("tools/jaeger/build.sh --path: %v", err))
	}
	_, err := os.Stat(bin)
	Need(t, err == nil, fmt.Sprintf("no Jaeger binary at %s (build it with bash tools/jaeger/build.sh)", bin))
	return bin
}

// StartProcess starts a real child process, stopped (SIGTERM, then KILL
// after 10 s) when the test ends; its log is printed if the test failed.
func StartProcess(t testing.TB, name, bin string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("--- %s log (last 3000 bytes) ---\n%s", name, b)
		}
	})
	return cmd
}

// WaitHTTP waits up to 30 s for url to answer 200.
func WaitHTTP(t testing.TB, what, url string) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, what, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// Jaeger is a running Jaeger v2 with in-memory storage.
type Jaeger struct {
	// Query is the query API and UI address (host:port).
	Query string
	// OTLPHTTP and OTLPGRPC receive spans.
	OTLPHTTP, OTLPGRPC string
}

// StartJaeger starts Jaeger v2 on free loopback ports until the test ends.
func StartJaeger(t testing.TB) Jaeger {
	t.Helper()
	bin := JaegerBinary(t)
	j := Jaeger{Query: natstest.FreeAddr(t), OTLPHTTP: natstest.FreeAddr(t), OTLPGRPC: natstest.FreeAddr(t)}
	queryGRPC, health := natstest.FreeAddr(t), natstest.FreeAddr(t)
	config := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %s
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`, health, j.Query, queryGRPC, j.OTLPGRPC, j.OTLPHTTP)
	cfgPath := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	StartProcess(t, "jaeger", bin, []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"}, "--config", "file:"+cfgPath)
	WaitHTTP(t, "Jaeger's query API", "http://"+j.Query+"/api/services")
	return j
}

// Trace is the part of Jaeger's /api/traces answer the suites read.
type Trace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// Traces decodes a Jaeger query answer ({"data": [...]}) from url.
func Traces(url string) ([]Trace, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var out struct {
		Data []Trace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// FindTrace returns the gateway trace of msgID if it holds every wanted
// operation from the wanted service.
func FindTrace(queryURL, msgID string, want map[string]string) *Trace {
	data, err := Traces(queryURL + `/api/traces?service=spectora-gateway&limit=20&lookback=1h&tags=` +
		`%7B%22messaging.message.id%22%3A%22` + msgID + `%22%7D`)
	if err != nil {
		return nil
	}
	for i := range data {
		tr := &data[i]
		have := map[string]string{}
		for _, s := range tr.Spans {
			have[s.OperationName] = tr.Processes[s.ProcessID].ServiceName
		}
		ok := true
		for op, svc := range want {
			if have[op] != svc {
				ok = false
			}
		}
		if ok {
			return tr
		}
	}
	return nil
}
