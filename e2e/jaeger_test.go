//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
)

// jaegerBinary returns JAEGER_BIN, or the binary tools/jaeger/build.sh
// caches (e2e/run builds it first).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("JAEGER_BIN")
	if bin == "" {
		out, err := exec.Command("bash", filepath.Join(root, "tools", "jaeger", "build.sh"), "--path").Output()
		bin = strings.TrimSpace(string(out))
		need(t, err == nil, fmt.Sprintf("tools/jaeger/build.sh --path: %v", err))
	}
	_, err := os.Stat(bin)
	need(t, err == nil, fmt.Sprintf("no Jaeger binary at %s (build it with bash tools/jaeger/build.sh)", bin))
	return bin
}

// process is a real child process, stopped when the test ends.
func startProcess(t *testing.T, name, bin string, env []string, args ...string) *exec.Cmd {
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
			t.Logf("--- %s log (last 3000 bytes) ---\n%s", name, tail(b, 3000))
		}
	})
	return cmd
}

func freeAddr(t *testing.T) string { return natstest.FreeAddr(t) }

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func waitHTTP(t *testing.T, what, url string) {
	t.Helper()
	eventually(t, 30*time.Second, what, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// jaegerTrace is the part of Jaeger's /api/traces answer the test reads.
type jaegerTrace struct {
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

// The gateway and the consumers run as separate processes exporting OTLP to a
// real Jaeger v2 (one over HTTP, one over gRPC); one webhook must come out as
// one trace holding the gateway's request, verification and publish, both
// groups' processing, the Spectora API call and the enriched republish.
func TestJaegerShowsOneTraceAcrossProcesses(t *testing.T) {
	jaegerBin := jaegerBinary(t)
	bin := binary(t)
	dir := t.TempDir()

	otlpHTTP, otlpGRPC, query, queryGRPC, health := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
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
`, health, query, queryGRPC, otlpGRPC, otlpHTTP)
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, "jaeger", jaegerBin, []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"}, "--config", "file:"+cfgPath)
	waitHTTP(t, "Jaeger's query API", "http://"+query+"/api/services")

	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	apiAddr, natsAddr, httpAddr, metricsAddr, gwOps := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	startProcess(t, "sim", bin, []string{"SPECTORA_API_TOKEN=sim-token", "SIM_RATE=0", "SIM_API_ADDR=" + apiAddr}, "sim")
	common := []string{"OTEL_BSP_SCHEDULE_DELAY=200", "LOG_LEVEL=debug"}
	startProcess(t, "gateway", bin, append(common,
		"SPECTORA_WEBHOOK_SECRET="+secret, "NATS_STORE_DIR="+filepath.Join(dir, "nats"), "NATS_LISTEN="+natsAddr,
		"HTTP_ADDR="+httpAddr, "METRICS_ADDR="+gwOps, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+otlpHTTP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"), "gateway")
	waitHTTP(t, "the gateway", "http://"+gwOps+"/readyz")
	startProcess(t, "consumers", bin, append(common,
		"NATS_URL=nats://"+natsAddr, "NATS_NKEY="+filepath.Join(dir, "nats", "users", "admin.nk"), "METRICS_ADDR="+metricsAddr, "SPECTORA_API_URL=http://"+apiAddr,
		"SPECTORA_API_TOKEN=sim-token", "AUDIT_LOG="+filepath.Join(dir, "audit.jsonl"),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+otlpGRPC, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "consumers")
	waitHTTP(t, "the consumers", "http://"+metricsAddr+"/readyz")

	signer, _ := webhook.NewSigner(secret)
	msgID := webhook.NewMessageID()
	body := webhook.Body("inspection.confirmed", "4242", nil)
	hdr, _ := signer.Headers(msgID, time.Now(), body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/webhooks/spectora", strings.NewReader(string(body)))
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST webhook: %v %v", resp, err)
	}
	resp.Body.Close()

	want := map[string]string{ // operation → service
		"/webhooks/spectora":                             "spectora-gateway",
		"verify headers":                                 "spectora-gateway",
		"verify webhook":                                 "spectora-gateway",
		"send spectora.inspection.confirmed":             "spectora-gateway",
		"process spectora.inspection.confirmed":          "spectora-consumers",
		"record cache get":                               "spectora-consumers",
		"HTTP GET":                                       "spectora-consumers",
		"send spectora.enriched.inspection.confirmed":    "spectora-consumers",
		"process spectora.enriched.inspection.confirmed": "spectora-consumers",
	}
	var found *jaegerTrace
	deadline := time.Now().Add(45 * time.Second)
	for found == nil && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		found = findTrace(t, "http://"+query, msgID, want)
	}
	if found == nil {
		t.Errorf("no trace in Jaeger holds all of %v for %s", keys(want), msgID)
		for _, svc := range []string{"spectora-gateway", "spectora-consumers"} {
			resp, err := http.Get("http://" + query + "/api/traces?service=" + svc + "&limit=5&lookback=1h")
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Data []jaegerTrace `json:"data"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			for _, tr := range out.Data {
				var ops []string
				for _, s := range tr.Spans {
					ops = append(ops, tr.Processes[s.ProcessID].ServiceName+": "+s.OperationName)
				}
				t.Logf("Jaeger has %s trace %s: %v", svc, tr.TraceID, ops)
			}
		}
		t.FailNow()
	}
	groups := map[string]bool{}
	for _, s := range found.Spans {
		for _, tag := range s.Tags {
			if tag.Key == "messaging.consumer.group.name" {
				groups[fmt.Sprint(tag.Value)] = true
			}
		}
	}
	if !groups["enricher"] || !groups["audit"] {
		t.Fatalf("trace lacks a group's processing span: %v", groups)
	}
	t.Logf("trace %s: %d spans from %d services", found.TraceID, len(found.Spans), len(found.Processes))
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// findTrace returns the gateway trace of msgID if it holds every wanted
// operation from the wanted service.
func findTrace(t *testing.T, queryURL, msgID string, want map[string]string) *jaegerTrace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		queryURL+`/api/traces?service=spectora-gateway&limit=20&lookback=1h&tags=`+
			`%7B%22messaging.message.id%22%3A%22`+msgID+`%22%7D`, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out struct {
		Data []jaegerTrace `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&out) != nil {
		return nil
	}
	for i := range out.Data {
		tr := &out.Data[i]
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
