package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/spectora-stream/spectora-stream/internal/audit"
	"github.com/spectora-stream/spectora-stream/internal/lockfile"
)

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s ends in a partial line: %q", path, b[max(0, len(b)-40):])
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestConcurrentAppendsAreWholeLines(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			line, _ := json.Marshal(map[string]any{"n": i, "pad": strings.Repeat("x", i*10)})
			if err := l.Append(context.Background(), line); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := lines(t, path)
	if len(got) != 200 {
		t.Fatalf("%d lines, want 200", len(got))
	}
	for _, s := range got {
		if !json.Valid([]byte(s)) {
			t.Fatalf("not a JSON line: %q", s)
		}
	}
}

func TestASecondInstanceOnTheSameFileIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := audit.Open(path); !errors.Is(err, lockfile.ErrLocked) || !strings.Contains(err.Error(), "own") {
		t.Fatalf("second Open = %v, want ErrLocked telling each instance to use its own file", err)
	}
}

func TestOpenCutsAFragmentLeftByACrash(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte("{\"a\":1}\n{\"b\":"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), []byte(`{"c":3}`)); err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	if got := lines(t, path); fmt.Sprint(got) != `[{"a":1} {"c":3}]` {
		t.Fatalf("lines %q", got)
	}
}

// A full disk mid-write: the file size limit (RLIMIT_FSIZE) cuts a write
// short, as ENOSPC does. The failed line leaves nothing behind, and once
// there is room the next line starts on a line of its own. Runs in a child
// process, since the limit applies to the whole process.
func TestShortWriteLeavesNoFragment(t *testing.T) {
	t.Parallel()
	if path := os.Getenv("AUDIT_FULL_DISK_CHILD"); path != "" {
		fullDiskChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestShortWriteLeavesNoFragment$")
	cmd.Env = append(os.Environ(), "AUDIT_FULL_DISK_CHILD="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("short write refused")) {
		t.Fatalf("child did not see the write fail:\n%s", out)
	}
	if got := lines(t, path); fmt.Sprint(got) != `[{"first":1} {"third":3}]` {
		t.Fatalf("lines %q", got)
	}
}

func fullDiskChild(path string) {
	fail := func(err error) { fmt.Println("child:", err); os.Exit(1) }
	l, err := audit.Open(path)
	if err != nil {
		fail(err)
	}
	if err := l.Append(context.Background(), []byte(`{"first":1}`)); err != nil {
		fail(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		fail(err)
	}
	st, _ := os.Stat(path)
	tight := syscall.Rlimit{Cur: uint64(st.Size()) + 20, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &tight); err != nil {
		fail(err)
	}
	err = l.Append(context.Background(), []byte(`{"second":"`+strings.Repeat("x", 100)+`"}`))
	if err == nil {
		fail(errors.New("a write past the limit succeeded"))
	}
	fmt.Println("short write refused:", err)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		fail(err)
	}
	if err := l.Append(context.Background(), []byte(`{"third":3}`)); err != nil {
		fail(err)
	}
	if err := l.Close(); err != nil {
		fail(err)
	}
}

func TestInstancePath(t *testing.T) {
	t.Parallel()
	host, _ := os.Hostname()
	if got := audit.InstancePath("/var/lib/audit-{hostname}.jsonl"); got != "/var/lib/audit-"+host+".jsonl" {
		t.Fatalf("InstancePath = %q", got)
	}
}
