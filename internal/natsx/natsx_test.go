package natsx

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/internal/natstest"
)

func TestEnsureStreamIsIdempotentAndUpdates(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.JetStream(t, srv)
	ctx := context.Background()
	cfg := DefaultStreamConfig()
	for range 2 {
		if _, err := EnsureStream(ctx, js, RawStreamConfig(cfg), nil); err != nil {
			t.Fatal(err)
		}
	}
	cfg.MaxAge = 48 * time.Hour
	cfg.Duplicates = 12 * time.Hour
	s, err := EnsureStream(ctx, js, RawStreamConfig(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != RawStream || c.Subjects[0] != RawSubjects || c.Storage != jetstream.FileStorage ||
		c.MaxAge != 48*time.Hour || c.Duplicates != 12*time.Hour {
		t.Fatalf("stream config = %+v", c)
	}
	// A stream whose subjects overlap is a permanent error, reported at once.
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = EnsureStream(short, js, jetstream.StreamConfig{Name: "OVERLAP", Subjects: []string{"spectora.>"}}, nil)
	if !errors.Is(err, ErrStreamSetup) || short.Err() != nil {
		t.Fatalf("overlap: err %v (ctx %v)", err, short.Err())
	}
}

func TestStreamConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*StreamConfig)
		setting string
	}{
		{"default ok", func(*StreamConfig) {}, ""},
		{"replicas", func(c *StreamConfig) { c.Replicas = 7 }, "NATS_STREAM_REPLICAS"},
		{"negative age", func(c *StreamConfig) { c.MaxAge = -time.Second }, "NATS_STREAM_MAX_AGE"},
		{"tiny window", func(c *StreamConfig) { c.Duplicates = 0 }, "NATS_DUPLICATE_WINDOW"},
		{"window over age", func(c *StreamConfig) { c.MaxAge = time.Hour; c.Duplicates = 2 * time.Hour }, "NATS_DUPLICATE_WINDOW"},
		{"unlimited age, long window", func(c *StreamConfig) { c.MaxAge = 0; c.Duplicates = 48 * time.Hour }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultStreamConfig()
			tt.mod(&c)
			err := c.Validate()
			if tt.setting == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.setting) {
				t.Fatalf("error %v, want one naming %s", err, tt.setting)
			}
		})
	}
}

func TestOpenEmbeddedListensForOtherClients(t *testing.T) {
	addr := natstest.FreeAddr(t)
	conn, err := Open(context.Background(), Config{Name: "t", Embedded: EmbeddedConfig{StoreDir: t.TempDir(), Listen: addr}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.Embedded() || conn.EmbeddedURL() != "nats://"+addr {
		t.Fatalf("embedded %v url %q", conn.Embedded(), conn.EmbeddedURL())
	}
	// A separate client (like the nats CLI) reaches the same JetStream.
	other, err := Open(context.Background(), Config{URL: conn.EmbeddedURL(), Name: "other"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	js, _ := jetstream.New(other.NC)
	if _, err := EnsureStream(context.Background(), js, RawStreamConfig(DefaultStreamConfig()), nil); err != nil {
		t.Fatal(err)
	}
	h := NewHealth(conn, mustJS(t, conn.NC), RawStream)
	if err := h.Ready(context.Background()); err != nil {
		t.Fatalf("not ready: %v", err)
	}
}

func mustJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestOpenErrorsNameTheSetting(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		setting string
	}{
		{"store dir", Config{}, "NATS_STORE_DIR"},
		{"listen", Config{Embedded: EmbeddedConfig{StoreDir: t.TempDir(), Listen: "4222"}}, "NATS_LISTEN"},
		{"user without password", Config{URL: "nats://127.0.0.1:1", User: "u"}, "NATS_PASSWORD"},
		{"missing creds file", Config{URL: "nats://127.0.0.1:1", CredsFile: "/nonexistent.creds"}, "NATS_CREDS"},
		{"unreachable", Config{URL: "nats://bob:secretpw@127.0.0.1:1", ConnectTimeout: time.Second}, "NATS_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.setting) {
				t.Fatalf("error %v, want one naming %s", err, tt.setting)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestHeaderValue(t *testing.T) {
	if got := HeaderValue("a\r\nb\x00c"); got != "a  b c" {
		t.Fatalf("HeaderValue = %q", got)
	}
	if got := HeaderValue(strings.Repeat("x", 600)); len(got) != 512 {
		t.Fatalf("len %d", len(got))
	}
}
