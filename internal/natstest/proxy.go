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
	watch   string
	seen    [][]byte
	conns   []net.Conn
}

// NewProxy forwards loopback connections to s until the test ends.
func NewProxy(t testing.TB, s interface{ Addr() net.Addr }) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{URL: "nats://" + ln.Addr().String()}
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
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
			p.mu.Lock()
			p.conns = append(p.conns, c, srv)
			p.mu.Unlock()
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

// Watch keeps the payloads of the publishes whose subject starts with
// prefix, lost or not, for Seen.
func (p *Proxy) Watch(prefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watch = prefix
}

// Seen returns the payloads kept since Watch.
func (p *Proxy) Seen() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.seen...)
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
		if subject != "" && p.lose(subject, frame[len(line):]) {
			continue
		}
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

// lose reports whether to leave out a publish of subject with body (the
// payload and its CRLF), and keeps the body when it is watched.
func (p *Proxy) lose(subject string, body []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watch != "" && strings.HasPrefix(subject, p.watch) {
		p.seen = append(p.seen, body[:len(body)-2])
	}
	if p.drop == 0 || !strings.HasPrefix(subject, p.prefix) {
		return false
	}
	p.drop--
	p.dropped++
	return true
}
