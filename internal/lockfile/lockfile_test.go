package lockfile_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectora-stream/spectora-stream/internal/lockfile"
)

// The lock holds against another process, not just within this one: a helper
// process (this test binary, re-run) tries to take it.
func TestAcquireRefusesASecondProcess(t *testing.T) {
	if os.Getenv("LOCKFILE_CHILD") != "" {
		_, err := lockfile.Acquire(os.Getenv("LOCKFILE_CHILD"))
		if errors.Is(err, lockfile.ErrLocked) {
			os.Stdout.WriteString("locked: " + err.Error())
			os.Exit(3)
		}
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "lock")
	l, err := lockfile.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	child := func() (int, string) {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestAcquireRefusesASecondProcess$")
		cmd.Env = append(os.Environ(), "LOCKFILE_CHILD="+path)
		out, _ := cmd.Output()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := child(); code != 3 || !strings.Contains(out, "pid") {
		t.Fatalf("second process: exit %d, %q; want it refused, naming the holder's pid", code, out)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if code, out := child(); code != 0 {
		t.Fatalf("after release: exit %d, %q", code, out)
	}
}
