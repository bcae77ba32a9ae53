package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/internal/embedded"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
	"github.com/spectora-stream/spectora-stream/stream"
)

func freeAddr(t *testing.T) string { return natstest.FreeAddr(t) }

// testProcess is a gateway on an embedded server in store, with ports of
// its own.
func testProcess(t *testing.T, store string) process {
	t.Helper()
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	return process{
		name: "test",
		serverFlags: serverFlags{
			NATS:     natsFlags{natsAuth: natsAuth{ConnectTimeout: 5 * time.Second}},
			Embedded: embeddedFlags{StoreDir: store, Listen: "off"},
			Streams:  streamFlags{SetupTimeout: 10 * time.Second},
			Ops:      opsFlags{MetricsAddr: freeAddr(t)},
		},
		gateway: &gatewayFlags{
			HTTPAddr: freeAddr(t), Secret: "whsec_" + base64.StdEncoding.EncodeToString(key),
			TypeFields: "type", IDFields: "id", BodyLimit: 1 << 19, MaxInflight: 32 << 20, MaxPending: 4000,
			PublishTimeout: 5 * time.Second, RetryAfter: 5 * time.Second, ShutdownTimeout: 10 * time.Second,
		},
	}
}

// startServe runs the process until the returned stop is called, once its
// ops address reports ready.
func startServe(t *testing.T, p process) (stop func() error) {
	t.Helper()
	return startServeLogging(t, p, slog.New(slog.DiscardHandler))
}

// startServeLogging is startServe logging to log.
func startServeLogging(t *testing.T, p process, log *slog.Logger) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, log, p) }()
	natstest.Eventually(t, 15*time.Second, "ready on the ops address", func() bool {
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v", err)
		default:
		}
		resp, err := http.Get("http://" + p.Ops.MetricsAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	var once sync.Once
	var err error
	return func() error { once.Do(func() { cancel(); err = <-done }); return err }
}

// Every webhook answered 2xx before a SIGTERM is still in the stream after a
// restart on the same store: the shutdown finishes in-flight requests and stops
// the embedded server cleanly.
func TestServeShutdownLosesNoAcknowledgedWebhook(t *testing.T) {
	store := t.TempDir()
	p := testProcess(t, store)
	gf := p.gateway
	stop := startServe(t, p)
	signer, err := webhook.NewSigner(gf.Secret)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + gf.HTTPAddr + "/webhooks/spectora"

	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		wg       sync.WaitGroup
		stopOnce sync.Once
		stopErr  error
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("msg_w%d_%d", w, i)
				hdr, _ := signer.Headers(id, time.Now(), webhook.Body("inspection.confirmed", fmt.Sprint(i), nil))
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(webhook.Body("inspection.confirmed", fmt.Sprint(i), nil))))
				req.Header = hdr
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // listener closed: shutdown reached us
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					acked[id] = true
					n := len(acked)
					mu.Unlock()
					if n == 200 {
						go stopOnce.Do(func() { stopErr = stop() })
					}
				} else if resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	stopOnce.Do(func() { stopErr = stop() })
	if stopErr != nil {
		t.Fatalf("serve returned %v", stopErr)
	}

	// Reopen the same store and look for every acknowledged ID.
	emb, err := embedded.Start(embedded.Config{StoreDir: store}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	conn, err := natsx.Open(context.Background(), natsx.Config{Name: "check", InProcess: emb.InProcess(), NkeyFile: emb.SeedFile(embedded.AdminUser)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	js, _ := jetstream.New(conn.NC)
	s, err := js.Stream(context.Background(), stream.Raw)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(context.Background())
	stored := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		stored[m.Header.Get(stream.HeaderMsgID)] = true
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range acked {
		if !stored[id] {
			t.Errorf("acknowledged %s is missing after restart", id)
		}
	}
	if len(acked) < 200 {
		t.Fatalf("only %d acknowledged", len(acked))
	}
	t.Logf("%d acknowledged, %d stored", len(acked), len(stored))
}

func TestServeRefusesBadSettingsNamingThem(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*process)
		setting string
	}{
		{"no secret", func(p *process) { p.gateway.Secret = "" }, "SPECTORA_WEBHOOK_SECRET"},
		{"blank secret", func(p *process) { p.gateway.Secret = " , " }, "SPECTORA_WEBHOOK_SECRET"},
		{"bad secret", func(p *process) { p.gateway.Secret = "whsec_short" }, "SPECTORA_WEBHOOK_SECRET"},
		{"bad sources", func(p *process) { p.gateway.Sources = "Bad Name=whsec_x" }, "SPECTORA_WEBHOOK_SOURCES"},
		{"dup window over max age", func(p *process) { p.Streams.Duplicates = ptr(200 * time.Hour) }, "NATS_DUPLICATE_WINDOW"},
		{"replicas", func(p *process) { p.Streams.Replicas = ptr(0) }, "NATS_STREAM_REPLICAS"},
		{"max pending", func(p *process) { p.gateway.MaxPending = 0 }, "NATS_PUBLISH_MAX_PENDING"},
		{"unreachable NATS_URL", func(p *process) {
			p.NATS.URL = "nats://user:pw@" + freeAddr(t)
			p.NATS.ConnectTimeout = time.Second
		}, "NATS_URL"},
		{"bad NATS_LISTEN", func(p *process) { p.Embedded.Listen = "nohostport" }, "NATS_LISTEN"},
		{"bad METRICS_ADDR", func(p *process) { p.Ops.MetricsAddr = "nohostport" }, "METRICS_ADDR"},
		{"bad groups", func(p *process) {
			c := testConsumerFlags(t, "http://127.0.0.1:1")
			c.Groups = "enricher,crm"
			p.consumers = &c
		}, "CONSUMER_GROUPS"},
		{"bad API URL", func(p *process) {
			c := testConsumerFlags(t, "https://bob:s3cret@exa mple.com")
			p.consumers = &c
		}, "SPECTORA_API_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testProcess(t, t.TempDir())
			tt.mod(&p)
			err := run(context.Background(), slog.New(slog.DiscardHandler), p)
			if err == nil || !strings.Contains(err.Error(), tt.setting) {
				t.Fatalf("error %v, want one naming %s", err, tt.setting)
			}
			if strings.Contains(err.Error(), ":pw@") || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks a password: %v", err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
