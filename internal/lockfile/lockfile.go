// Package lockfile gives one process at a time a directory or file: the
// embedded JetStream store and the audit log are each written by exactly one
// process, or they corrupt.
package lockfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrLocked means another process holds the lock.
var ErrLocked = errors.New("in use by another process")

// Lock is a held lock; Release gives it up. The operating system releases it
// when the process dies, so a crash never leaves a stale lock behind.
type Lock struct {
	f *os.File
}

// Acquire takes an exclusive lock on path (created if missing, 0600) without
// waiting. If another process holds it, the error wraps ErrLocked and names
// that process's PID when it wrote one.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lock(f); err != nil {
		b, _ := os.ReadFile(path)
		_ = f.Close()
		if pid := strings.TrimSpace(string(b)); pid != "" {
			return nil, fmt.Errorf("%w (pid %s holds %s)", ErrLocked, pid, path)
		}
		return nil, fmt.Errorf("%w (%s is locked)", ErrLocked, path)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = unlock(l.f)
	err := l.f.Close()
	l.f = nil
	return err
}
