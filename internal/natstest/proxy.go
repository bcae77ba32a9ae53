package natstest

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Proxy sits between clients and a server and can lose a client's
// publishes on their way: the fault of a frame the client sent and believes
// delivered that the server never acted on.
type Proxy struct {
	// URL is the address clients connect to instead of the server's.
	URL string

	mu      sync.Mutex
	prefix  string
	drop    int
	dropped int
}

// NewProxy forwards loopback connections to s until the test ends.
func NewProxy(t testing.TB, s interface{ Addr() net.Addr }) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	p := &Proxy{URL: "nats://" + ln.Addr().String()}
	target := s.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			t.Cleanup(func() { _ = c.Close(); _ = srv.Close() })
			go func() { _, _ = io.Copy(c, srv); _ = c.Close() }()
			go func() { p.forward(srv, c); _ = srv.Close() }()
		}
	}()
	return p
}

// DropNext loses the next n publishes whose subject starts with prefix.
func (p *Proxy) DropNext(prefix string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prefix, p.drop = prefix, n
}

// Dropped is how many publishes were lost so far.
func (p *Proxy) Dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// forward copies the client's protocol to the server frame by frame,
// leaving out the publishes chosen to be lost.
func (p *Proxy) forward(dst io.Writer, src io.Reader) {
	r := bufio.NewReader(src)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		frame := []byte(line)
		var subject string
		if f := strings.Fields(line); len(f) >= 3 && (f[0] == "PUB" || f[0] == "HPUB") {
			// PUB subject [reply] size / HPUB subject [reply] hdr-size size:
			// the payload and its CRLF follow the line.
			size, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return
			}
			payload := make([]byte, size+2)
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			frame = append(frame, payload...)
			subject = f[1]
		}
		if subject != "" && p.lose(subject) {
			continue
		}
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

func (p *Proxy) lose(subject string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drop == 0 || !strings.HasPrefix(subject, p.prefix) {
		return false
	}
	p.drop--
	p.dropped++
	return true
}

// LogBuffer is a log destination (for slog handlers) that tests read while
// the code under test still writes.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
