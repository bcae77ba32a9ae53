package natsx_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/internal/embedded"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/stream"
)

func TestEnsureStreamIsIdempotentAndUpdates(t *testing.T) {
	t.Parallel()
	srv := natstest.Server(t)
	_, js := natstest.JetStream(t, srv)
	ctx := context.Background()
	l := stream.DefaultLimits()
	for range 2 {
		if _, err := natsx.EnsureStream(ctx, js, stream.RawConfig(l), nil); err != nil {
			t.Fatal(err)
		}
	}
	l.MaxAge = 48 * time.Hour
	l.Duplicates = 12 * time.Hour
	s, err := natsx.EnsureStream(ctx, js, stream.RawConfig(l), nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != stream.Raw || len(c.Subjects) != 2 || c.Storage != jetstream.FileStorage || c.MaxAge != 48*time.Hour || c.Duplicates != 12*time.Hour {
		t.Fatalf("stream config = %+v", c)
	}
	// A stream whose subjects overlap is a permanent error, reported at once.
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = natsx.EnsureStream(short, js, jetstream.StreamConfig{Name: "OVERLAP", Subjects: []string{"spectora.>"}}, nil)
	if !errors.Is(err, natsx.ErrStreamSetup) || short.Err() != nil {
		t.Fatalf("overlap: err %v (ctx %v)", err, short.Err())
	}
}

func TestOpenInProcessAndOverTheNetwork(t *testing.T) {
	t.Parallel()
	addr := natstest.FreeAddr(t)
	emb, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Listen: addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	if emb.ClientURL() != "nats://"+addr {
		t.Fatalf("client url %q", emb.ClientURL())
	}
	conn, err := natsx.Open(context.Background(), natsx.Config{Name: "t", InProcess: emb.InProcess(), NkeyFile: emb.SeedFile(embedded.AdminUser)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A separate client (like the nats CLI) reaches the same JetStream.
	other, err := natsx.Open(context.Background(), natsx.Config{URL: emb.ClientURL(), Name: "other", NkeyFile: emb.SeedFile(embedded.AdminUser)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	js, _ := jetstream.New(other.NC)
	if _, err := natsx.EnsureStream(context.Background(), js, stream.RawConfig(stream.DefaultLimits()), nil); err != nil {
		t.Fatal(err)
	}
	js2, _ := jetstream.New(conn.NC)
	if err := natsx.NewHealth(conn, js2, stream.Raw).Ready(context.Background()); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	if err := natsx.NewHealth(conn, js2, stream.Enriched).Ready(context.Background()); err == nil {
		t.Fatal("ready without the enriched stream")
	}
}

func TestOpenErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     natsx.Config
		setting string
	}{
		{"no url", natsx.Config{}, "NATS_URL"},
		{"user without password", natsx.Config{URL: "nats://127.0.0.1:1", User: "u"}, "NATS_PASSWORD"},
		{"missing creds file", natsx.Config{URL: "nats://127.0.0.1:1", CredsFile: "/nonexistent.creds"}, "NATS_CREDS"},
		{"unreachable", natsx.Config{URL: "nats://bob:secretpw@127.0.0.1:1", ConnectTimeout: time.Second}, "NATS_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := natsx.Open(context.Background(), tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.setting) {
				t.Fatalf("error %v, want one naming %s", err, tt.setting)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

// A limit an operator changed with a NATS client survives a restart that
// doesn't set it, and is reported; one that a setting names is applied. The
// subjects are always this program's.
func TestProvisionReportsDriftInsteadOfReverting(t *testing.T) {
	t.Parallel()
	_, js := natstest.JetStream(t, natstest.Server(t))
	ctx := context.Background()
	defaults := stream.RawConfig(stream.DefaultLimits())
	if _, _, err := natsx.Provision(ctx, js, defaults, natsx.Explicit{}, nil); err != nil {
		t.Fatal(err)
	}
	// An operator shortens the retention by hand and drops the redrive subjects.
	hand := defaults
	hand.MaxAge, hand.Duplicates, hand.Subjects = 48*time.Hour, 12*time.Hour, []string{stream.RawSubjects}
	if _, err := js.UpdateStream(ctx, hand); err != nil {
		t.Fatal(err)
	}
	_, drifts, err := natsx.Provision(ctx, js, defaults, natsx.Explicit{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	info := natstest.StreamInfo(t, js, stream.Raw)
	if info.Config.MaxAge != 48*time.Hour || info.Config.Duplicates != 12*time.Hour || len(info.Config.Subjects) != 2 {
		t.Fatalf("after a restart: max_age %s duplicates %s subjects %v; want the hand-set limits kept and our subjects back",
			info.Config.MaxAge, info.Config.Duplicates, info.Config.Subjects)
	}
	if len(drifts) != 2 || !strings.Contains(drifts[0].String(), "NATS_STREAM_MAX_AGE") || drifts[0].Found != "48h0m0s" {
		t.Fatalf("drifts %v", drifts)
	}
	// Set explicitly, the setting wins.
	if _, drifts, err = natsx.Provision(ctx, js, defaults, natsx.Explicit{MaxAge: true, Duplicates: true}, nil); err != nil || len(drifts) != 0 {
		t.Fatalf("explicit: %v %v", drifts, err)
	}
	if info := natstest.StreamInfo(t, js, stream.Raw); info.Config.MaxAge != 7*24*time.Hour {
		t.Fatalf("explicit max_age not applied: %s", info.Config.MaxAge)
	}
}
