//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/e2etest"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
)

// The gateway and the consumers run as separate processes exporting OTLP to a
// real Jaeger v2 (one over HTTP, one over gRPC); one webhook must come out as
// one trace holding the gateway's request, verification and publish, both
// groups' processing, the Spectora API call and the enriched republish.
func TestJaegerShowsOneTraceAcrossProcesses(t *testing.T) {
	bin := binary(t)
	j := e2etest.StartJaeger(t)
	query, otlpHTTP, otlpGRPC := j.Query, j.OTLPHTTP, j.OTLPGRPC
	dir := t.TempDir()
	freeAddr := natstest.FreeAddr

	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	apiAddr, natsAddr, httpAddr, metricsAddr, gwOps := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	e2etest.StartProcess(t, "sim", bin, []string{"SPECTORA_API_TOKEN=sim-token", "SIM_RATE=0", "SIM_API_ADDR=" + apiAddr}, "sim")
	common := []string{"OTEL_BSP_SCHEDULE_DELAY=200", "LOG_LEVEL=debug"}
	e2etest.StartProcess(t, "gateway", bin, append(common,
		"SPECTORA_WEBHOOK_SECRET="+secret, "NATS_STORE_DIR="+filepath.Join(dir, "nats"), "NATS_LISTEN="+natsAddr,
		"HTTP_ADDR="+httpAddr, "METRICS_ADDR="+gwOps, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+otlpHTTP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"), "gateway")
	e2etest.WaitHTTP(t, "the gateway", "http://"+gwOps+"/readyz")
	e2etest.StartProcess(t, "consumers", bin, append(common,
		"NATS_URL=nats://"+natsAddr, "NATS_NKEY="+filepath.Join(dir, "nats", "users", "admin.nk"), "METRICS_ADDR="+metricsAddr, "SPECTORA_API_URL=http://"+apiAddr,
		"SPECTORA_API_TOKEN=sim-token", "AUDIT_LOG="+filepath.Join(dir, "audit.jsonl"),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+otlpGRPC, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "consumers")
	e2etest.WaitHTTP(t, "the consumers", "http://"+metricsAddr+"/readyz")

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
	var found *e2etest.Trace
	deadline := time.Now().Add(45 * time.Second)
	for found == nil && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		found = e2etest.FindTrace("http://"+query, msgID, want)
	}
	if found == nil {
		t.Errorf("no trace in Jaeger holds all of %v for %s", keys(want), msgID)
		for _, svc := range []string{"spectora-gateway", "spectora-consumers"} {
			data, err := e2etest.Traces("http://" + query + "/api/traces?service=" + svc + "&limit=5&lookback=1h")
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range data {
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
