package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/gateway"
	"github.com/spectora-stream/spectora-stream/internal/audit"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/sim"
	"github.com/spectora-stream/spectora-stream/internal/telemetry"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// One webhook through the real gateway, JetStream, the enricher (with a cache
// miss and an API call) and the audit group is one trace with the expected
// span names, kinds, attributes, parents and links.
func TestOneWebhookIsOneTrace(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.JetStream(t, srv)
	ctx := context.Background()
	kv := natstest.Streams(t, js)
	gwRec, consRec := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	gwTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(gwRec))
	consTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(consRec))

	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	nc := natstest.Connect(t, srv)
	gw, err := gateway.New(gateway.Config{Secrets: []string{secret}, TracerProvider: gwTP}, js, natsx.NewHealth(&natsx.Conn{NC: nc}, js))
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = gw.Serve(ln) }()
	defer func() { _ = gw.Shutdown(ctx) }()

	api := httptest.NewServer(sim.NewAPI(sim.APIConfig{Token: "tok"}, sim.NewStore(0)))
	defer api.Close()
	client, err := spectora.NewClient(spectora.Config{BaseURL: api.URL, Token: "tok", TracerProvider: consTP, Propagator: telemetry.Propagator()})
	if err != nil {
		t.Fatal(err)
	}
	enr := enrich.New(enrich.Config{TracerProvider: consTP}, kv, enrich.Clients{"": client})
	log, _ := audit.Open(filepath.Join(t.TempDir(), "audit.jsonl"))
	defer log.Close()
	for _, cfg := range []consumers.Config{
		{Name: enrich.GroupName, Handler: enr.Handler(js), TracerProvider: consTP},
		{Name: audit.GroupName, Stream: stream.Enriched, Handler: log.Handler(), TracerProvider: consTP},
	} {
		g, err := consumers.NewGroup(cfg, js)
		if err != nil {
			t.Fatal(err)
		}
		natstest.Run(t, g)
	}

	signer, _ := webhook.NewSigner(secret)
	body := webhook.Body("inspection.confirmed", "42", nil)
	hdr, _ := signer.Headers("msg_trace", time.Now(), body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/webhooks/spectora", strings.NewReader(string(body)))
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()

	find := func(rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
		for _, s := range rec.Ended() {
			if s.Name() == name {
				return s
			}
		}
		return nil
	}
	waitFor(t, "the audit group's span", func() bool { return find(consRec, "process spectora.enriched.inspection.confirmed") != nil })

	server := find(gwRec, "/webhooks/spectora")
	verify := find(gwRec, "verify webhook")
	send := find(gwRec, "send spectora.inspection.confirmed")
	process := find(consRec, "process spectora.inspection.confirmed")
	cache := find(consRec, "record cache get")
	var apiCall sdktrace.ReadOnlySpan
	for _, s := range consRec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			apiCall = s
		}
	}
	republish := find(consRec, "send spectora.enriched.inspection.confirmed")
	auditSpan := find(consRec, "process spectora.enriched.inspection.confirmed")
	for name, s := range map[string]sdktrace.ReadOnlySpan{"server": server, "verify": verify, "send": send, "process": process,
		"cache": cache, "api": apiCall, "republish": republish, "audit": auditSpan} {
		if s == nil {
			var names []string
			for _, x := range append(gwRec.Ended(), consRec.Ended()...) {
				names = append(names, x.Name())
			}
			t.Fatalf("no %s span among %v", name, names)
		}
		if s.SpanContext().TraceID() != server.SpanContext().TraceID() {
			t.Errorf("%s span is in another trace", name)
		}
	}
	childOf := func(child, parent sdktrace.ReadOnlySpan, what string) {
		if child.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: %q is not a child of %q", what, child.Name(), parent.Name())
		}
	}
	childOf(verify, server, "verify")
	childOf(send, server, "publish")
	childOf(process, send, "enricher")
	childOf(cache, process, "cache")
	childOf(apiCall, process, "api")
	childOf(republish, process, "republish")
	childOf(auditSpan, republish, "audit")
	if server.SpanKind() != trace.SpanKindServer || send.SpanKind() != trace.SpanKindProducer ||
		process.SpanKind() != trace.SpanKindConsumer || republish.SpanKind() != trace.SpanKindProducer {
		t.Errorf("kinds: server %v send %v process %v republish %v", server.SpanKind(), send.SpanKind(), process.SpanKind(), republish.SpanKind())
	}
	if l := process.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("process span links %v, want the producer", l)
	}
	sa, pa := attrs(send), attrs(process)
	for k, want := range map[attribute.Key]string{
		"messaging.system": "nats", "messaging.destination.name": "spectora.inspection.confirmed", "messaging.operation.type": "send",
		"messaging.message.id": "msg_trace", "spectora.event.type": "inspection.confirmed", "spectora.record.id": "42",
	} {
		if got := sa[k].String(); got != want {
			t.Errorf("send %s = %q, want %q", k, got, want)
		}
	}
	if sa[telemetry.AttrStreamSequence].AsInt64() != 1 {
		t.Errorf("send stream sequence %v", sa[telemetry.AttrStreamSequence])
	}
	for k, want := range map[attribute.Key]string{
		"messaging.operation.type": "process", "messaging.consumer.group.name": "enricher", "messaging.nats.stream.sequence": "1",
		"messaging.nats.delivery_count": "1", "svix.message.id": "msg_trace", "spectora.event.type": "inspection.confirmed",
		"spectora.record.id": "42", "spectora.consumer.outcome": "ack",
	} {
		if got := pa[k].String(); got != want {
			t.Errorf("process %s = %q, want %q", k, got, want)
		}
	}
	if got := attrs(auditSpan)["messaging.consumer.group.name"].String(); got != "audit" {
		t.Errorf("audit span group %q", got)
	}
}
