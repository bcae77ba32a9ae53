// Package audit is the built-in audit group: it appends one JSON line per
// enriched event to a file, on disk before the event is acknowledged.
//
// Each file belongs to one process (a lock file beside it), so a failed write
// can be undone: a line is either whole in the file or not there at all,
// never a fragment that the next line is appended onto. Lines from concurrent
// handlers are written and fsynced together (group commit), so the cost of
// an fsync is shared by every event waiting for it.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/internal/lockfile"
	"github.com/spectora-stream/spectora-stream/stream"
)

// GroupName is the built-in audit group's name.
const GroupName = "audit"

// ErrClosed means the log was closed while a line waited to be written.
var ErrClosed = errors.New("audit log closed")

// Entry is one line of the audit log.
type Entry struct {
	Time         time.Time       `json:"time"`
	Group        string          `json:"group"`
	Subject      string          `json:"subject"`
	Sequence     uint64          `json:"seq"`
	SourceSeq    uint64          `json:"source_seq"`
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	RecordID     string          `json:"record_id"`
	Source       string          `json:"source"`
	Origin       string          `json:"origin,omitempty"`
	ReceivedAt   time.Time       `json:"received_at"`
	RecordStatus string          `json:"record_status"`
	Record       json.RawMessage `json:"record,omitempty"`
}

// Log is an append-only JSON-lines file owned by this process.
type Log struct {
	path string
	f    *os.File
	lock *lockfile.Lock
	size int64 // bytes known to be whole lines on disk

	mu      sync.Mutex
	queue   []*write
	wake    chan struct{}
	closed  bool
	stopped chan struct{}
}

// write is one line waiting for its commit.
type write struct {
	line []byte
	done chan error
}

// Open opens (creating) path for appending and takes its lock
// (path + ".lock"). A second process on the same file is refused: give each
// instance its own file. A fragment left at the end by a crash mid-write is
// cut off; its event was never acknowledged and comes again.
func Open(path string) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	lock, err := lockfile.Acquire(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("%s: %w; give each instance a file of its own", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		_ = lock.Release()
		return nil, err
	}
	size, err := wholeLines(f)
	if err != nil {
		_ = f.Close()
		_ = lock.Release()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	l := &Log{path: path, f: f, lock: lock, size: size, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go l.commit()
	return l, nil
}

// wholeLines truncates a trailing fragment (bytes after the last newline)
// and returns the file's size.
func wholeLines(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if size == 0 {
		return 0, nil
	}
	// Look back for the last newline, a block at a time.
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = start + int64(i) + 1
			break
		}
		end = start
	}
	if end != size {
		if err := f.Truncate(end); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// Path is the file's path.
func (l *Log) Path() string { return l.path }

// Append writes line (a newline is added) and returns once it is on disk, or
// with an error, in which case none of it is in the file.
func (l *Log) Append(ctx context.Context, line []byte) error {
	w := &write{line: line, done: make(chan error, 1)}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.queue = append(l.queue, w)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		// The write may still land; the event is redelivered and the line
		// may then appear twice (at-least-once, as the audit log promises).
		return ctx.Err()
	}
}

// commit writes whatever is queued in one write and one fsync, until Close.
func (l *Log) commit() {
	defer close(l.stopped)
	var buf []byte
	for range l.wake {
		l.mu.Lock()
		batch := l.queue
		l.queue = nil
		closed := l.closed
		l.mu.Unlock()
		if len(batch) > 0 {
			buf = buf[:0]
			for _, w := range batch {
				buf = append(buf, w.line...)
				buf = append(buf, '\n')
			}
			err := l.flush(buf)
			for _, w := range batch {
				w.done <- err
			}
		}
		if closed {
			return
		}
	}
}

// flush appends buf and syncs; on any failure the file is cut back to its
// last whole line, so nothing of buf stays.
func (l *Log) flush(buf []byte) error {
	n, err := l.f.Write(buf)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		if n > 0 {
			if terr := l.f.Truncate(l.size); terr != nil {
				return fmt.Errorf("audit log %s: %w; and cutting back the partial write failed: %v", l.path, err, terr)
			}
			_ = l.f.Sync()
		}
		return fmt.Errorf("audit log %s: %w", l.path, err)
	}
	l.size += int64(n)
	return nil
}

// Close writes what is queued, then closes the file and releases its lock.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.stopped
	err := l.f.Close()
	if lerr := l.lock.Release(); err == nil {
		err = lerr
	}
	return err
}

// Handler is the audit group's handler: one line per event.
func (l *Log) Handler() consumers.Handler {
	return func(ctx context.Context, m *consumers.Message) error {
		ev := m.Event
		e := Entry{
			Time: time.Now().UTC(), Group: m.Group, Subject: m.Subject, Sequence: m.Sequence,
			ID: ev.GetId(), Type: ev.GetType(), RecordID: ev.GetRecordId(), Source: ev.GetSource(),
			Origin: m.Header.Get(stream.HeaderOrigin), ReceivedAt: ev.GetReceivedAt().AsTime(), RecordStatus: "not_fetched",
		}
		if m.Enriched != nil {
			e.SourceSeq = m.Enriched.GetSourceSequence()
			e.RecordStatus = stream.RecordStatusName(m.Enriched.GetRecordStatus())
			if json.Valid(m.Enriched.GetRecord()) {
				e.Record = m.Enriched.GetRecord()
			}
		}
		line, err := json.Marshal(e)
		if err != nil {
			return consumers.Permanent(err)
		}
		return l.Append(ctx, line)
	}
}

// InstancePath expands "{hostname}" and "{pid}" in a configured path, so
// replicas sharing a volume each get a file of their own.
func InstancePath(path string) string {
	if strings.Contains(path, "{hostname}") {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown"
		}
		path = strings.ReplaceAll(path, "{hostname}", host)
	}
	return strings.ReplaceAll(path, "{pid}", fmt.Sprint(os.Getpid()))
}
