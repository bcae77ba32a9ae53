//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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
	bin = filepath.Join(dir, "spectora-stream")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/spectora-stream")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		binErr = fmt.Errorf("go build: %v\n%s", err, out)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// need skips the test, or with SPECTORA_REQUIRE_E2E=1 fails it, when what
// it needs is missing; it never passes because something was absent.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf("\n\n!!! %s cannot run: %s\n\n", t.Name(), why)
	if os.Getenv("SPECTORA_REQUIRE_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
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
