//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/e2etest"
)

// root is the repository root.
const root = ".."

// bin is the spectora-stream binary TestMain built, and binErr why not.
var bin, binErr = "", error(nil)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spectora-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, binErr = e2etest.Build(dir)
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	if binErr != nil {
		t.Fatal(binErr)
	}
	return bin
}

// eventually polls cond every 200 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
