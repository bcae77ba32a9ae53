package embedded_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/internal/embedded"
	"github.com/spectora-stream/spectora-stream/internal/lockfile"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/stream"
)

// Two servers on one store corrupt it: the second is refused at start.
func TestASecondServerOnTheStoreIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := embedded.Start(embedded.Config{StoreDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = embedded.Start(embedded.Config{StoreDir: dir}, nil)
	if !errors.Is(err, lockfile.ErrLocked) || !strings.Contains(err.Error(), "NATS_STORE_DIR") {
		t.Fatalf("second server: %v, want ErrLocked naming NATS_STORE_DIR", err)
	}
	first.Shutdown()
	again, err := embedded.Start(embedded.Config{StoreDir: dir}, nil)
	if err != nil {
		t.Fatalf("after shutdown: %v", err)
	}
	again.Shutdown()
}

func TestStartErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg     embedded.Config
		setting string
	}{
		"store dir": {embedded.Config{}, "NATS_STORE_DIR"},
		"listen":    {embedded.Config{StoreDir: t.TempDir(), Listen: "4222"}, "NATS_LISTEN"},
		"port":      {embedded.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:99999"}, "NATS_LISTEN"},
	} {
		if _, err := embedded.Start(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.setting)
		}
	}
}

// By default the server wants credentials: a local process without a seed
// file can't connect, the reader can consume but not forge events or delete
// streams, and the seed files are the owner's alone.
func TestCredentialsAreRequiredAndLeastPrivilege(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := natstest.FreeAddr(t)
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, Listen: addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	for _, user := range []string{embedded.AdminUser, embedded.ReaderUser} {
		st, err := os.Stat(srv.SeedFile(user))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s seed file: %v, mode %v; want 0600", user, err, st.Mode())
		}
	}
	if nc, err := nats.Connect(srv.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	}
	connect := func(user string) jetstream.JetStream {
		opt, err := nats.NkeyOptionFromSeed(srv.SeedFile(user))
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(srv.ClientURL(), opt)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return js
	}
	admin := connect(embedded.AdminUser)
	natstest.Streams(t, admin)
	natstest.Publish(t, admin, "msg_1", "inspection.confirmed", "1")
	reader := connect(embedded.ReaderUser)
	ctx := context.Background()
	c, err := reader.CreateOrUpdateConsumer(ctx, stream.Raw, jetstream.ConsumerConfig{Durable: "crm", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("reader: create a durable consumer: %v", err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(3 * time.Second))
	if err != nil || m.Ack() != nil {
		t.Fatalf("reader: fetch and ack: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := reader.PublishMsg(short, natstest.Event("msg_forged", "inspection.confirmed", "1")); err == nil {
		t.Fatal("reader published a raw event")
	}
	if err := reader.DeleteStream(short, stream.Raw); err == nil {
		t.Fatal("reader deleted a stream")
	}
	// The same seeds on the next start.
	srv.Shutdown()
	again, err := embedded.Start(embedded.Config{StoreDir: dir, Listen: natstest.FreeAddr(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Shutdown()
	opt, _ := nats.NkeyOptionFromSeed(again.SeedFile(embedded.ReaderUser))
	nc, err := nats.Connect(again.ClientURL(), opt)
	if err != nil {
		t.Fatalf("reader after a restart: %v", err)
	}
	nc.Close()
}

func TestNoAuthIsExplicit(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Listen: natstest.FreeAddr(t), NoAuth: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("NoAuth: %v", err)
	}
	nc.Close()
	if srv.SeedFile(embedded.AdminUser) != "" {
		t.Fatal("seed file reported without auth")
	}
}
