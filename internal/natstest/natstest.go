// Package natstest starts real, in-process NATS servers for tests: each test gets
// its own JetStream server on a random loopback port with its own store, so
// `go test ./...` needs no Docker and tests never share state.
package natstest

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server starts a JetStream-enabled nats-server on 127.0.0.1 with a random port
// and a store under t.TempDir(); it is shut down when the test ends.
func Server(t testing.TB) *server.Server {
	t.Helper()
	return ServerWith(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
}

// ServerWith starts a server with opts, forcing loopback, a random port and no
// signal handlers.
func ServerWith(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host = "127.0.0.1"
	if opts.Port == 0 {
		opts.Port = -1
	}
	opts.NoSigs = true
	opts.NoLog = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect opens a client connection to s, closed when the test ends.
func Connect(t testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a fresh connection to s.
func JetStream(t testing.TB, s *server.Server, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := Connect(t, s)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Eventually polls cond every 10 ms until it holds, failing the test with
// what after timeout. For asynchronous outcomes (deliveries, acks, traces).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreeAddr returns a 127.0.0.1:port nobody listens on, for a server a test
// starts later (a child process, say). Ports are never handed out twice in one
// test binary: a port the kernel offers again is held while another is taken.
func FreeAddr(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		if !given[port] {
			given[port] = true
			return ln.Addr().String()
		}
	}
	t.Fatal("no free loopback port")
	return ""
}
