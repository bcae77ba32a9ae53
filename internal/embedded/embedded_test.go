package embedded_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spectora-stream/spectora-stream/internal/embedded"
	"github.com/spectora-stream/spectora-stream/internal/lockfile"
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
