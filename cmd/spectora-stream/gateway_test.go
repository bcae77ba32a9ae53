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

	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/webhook"
)

func freeAddr(t *testing.T) string { return natstest.FreeAddr(t) }

func testFlags(t *testing.T, store string) (natsFlags, gatewayFlags) {
	t.Helper()
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	nf := natsFlags{
		StoreDir: store, Listen: "off", Replicas: 1, MaxAge: 168 * time.Hour, DupWindow: 24 * time.Hour,
		MaxPending: 4000, ConnectTimeout: 5 * time.Second, SetupTimeout: 10 * time.Second,
	}
	gf := gatewayFlags{
		HTTPAddr: freeAddr(t), Secret: "whsec_" + base64.StdEncoding.EncodeToString(key),
		TypeFields: []string{"type"}, IDFields: []string{"id"}, BodyLimit: 1 << 20,
		PublishTimeout: 5 * time.Second, RetryAfter: 5 * time.Second, ShutdownTimeout: 10 * time.Second,
	}
	return nf, gf
}

// startServe runs the serve wiring until the returned stop is called.
func startServe(t *testing.T, nf natsFlags, gf gatewayFlags) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.DiscardHandler)
	go func() { done <- run(ctx, log, nf, &gf, nil, "test", "") }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + gf.HTTPAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() error { cancel(); return <-done }
}

// Every webhook answered 2xx before a SIGTERM is still in the stream after a
// restart on the same store: the shutdown finishes in-flight requests and stops
// the embedded server cleanly.
func TestServeShutdownLosesNoAcknowledgedWebhook(t *testing.T) {
	store := t.TempDir()
	nf, gf := testFlags(t, store)
	stop := startServe(t, nf, gf)
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
	conn, err := natsx.Open(context.Background(), nf.config("check"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	js, _ := jetstream.New(conn.NC)
	s, err := js.Stream(context.Background(), natsx.RawStream)
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
		stored[m.Header.Get(natsx.HeaderMsgID)] = true
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
		mod     func(*natsFlags, *gatewayFlags)
		setting string
	}{
		{"no secret", func(_ *natsFlags, g *gatewayFlags) { g.Secret = "" }, "SPECTORA_WEBHOOK_SECRET"},
		{"blank secret", func(_ *natsFlags, g *gatewayFlags) { g.Secret = " , " }, "SPECTORA_WEBHOOK_SECRET"},
		{"bad secret", func(_ *natsFlags, g *gatewayFlags) { g.Secret = "whsec_short" }, "SPECTORA_WEBHOOK_SECRET"},
		{"bad sources", func(_ *natsFlags, g *gatewayFlags) { g.Sources = "Bad Name=whsec_x" }, "SPECTORA_WEBHOOK_SOURCES"},
		{"dup window over max age", func(n *natsFlags, _ *gatewayFlags) { n.DupWindow = 200 * time.Hour }, "NATS_DUPLICATE_WINDOW"},
		{"replicas", func(n *natsFlags, _ *gatewayFlags) { n.Replicas = 0 }, "NATS_STREAM_REPLICAS"},
		{"unreachable NATS_URL", func(n *natsFlags, _ *gatewayFlags) {
			n.URL = "nats://user:pw@" + freeAddr(t)
			n.ConnectTimeout = time.Second
		}, "NATS_URL"},
		{"bad NATS_LISTEN", func(n *natsFlags, _ *gatewayFlags) { n.Listen = "nohostport" }, "NATS_LISTEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nf, gf := testFlags(t, t.TempDir())
			tt.mod(&nf, &gf)
			err := run(context.Background(), slog.New(slog.DiscardHandler), nf, &gf, nil, "test", "")
			if err == nil || !strings.Contains(err.Error(), tt.setting) {
				t.Fatalf("error %v, want one naming %s", err, tt.setting)
			}
			if strings.Contains(err.Error(), ":pw@") {
				t.Fatalf("error leaks the NATS password: %v", err)
			}
		})
	}
}
