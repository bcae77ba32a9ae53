// Package natstest starts real, in-process NATS servers for tests: each test gets
// its own JetStream server on a random loopback port with its own store, so
// `go test ./...` needs no Docker and tests never share state.
package natstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/stream"
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
	if !s.ReadyForConnections(Patience) {
		t.Fatalf("nats server on port %d not ready after %s", opts.Port, Patience)
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

// Patience bounds the wait for an outcome that comes in milliseconds on an
// idle machine (a delivery, an ack, a redelivery after a 2 s ack wait). It is
// generous on purpose: CI runs every package at once under the race
// detector on two cores, and a test must not fail because the machine is
// slow. Passing tests never wait for it.
const Patience = time.Minute

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
// starts later (a child process, say, or a NATS server brought back after an
// outage). The port lies below the kernel's ephemeral range, from which every
// outgoing connection on the machine takes its local port: a port from that
// range, left free for a moment, can be taken by any connection of any
// process (CI runs many test binaries at once), and then the server can't
// bind it. Ports are never handed out twice in one test binary.
func FreeAddr(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	low := ephemeralLow()
	const first = 20000
	for range 1000 {
		port := first + rand.IntN(max(1, low-first))
		if given[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use
		}
		_ = ln.Close()
		given[port] = true
		return ln.Addr().String()
	}
	t.Fatal("no free loopback port below the ephemeral range")
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux
// default 32768).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 20100 {
				return n
			}
		}
	}
	return 32768
}

// Streams provisions the three streams and the record bucket, as the server
// commands do at start-up, and returns the bucket.
func Streams(t testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	ctx := context.Background()
	for _, cfg := range stream.Configs(stream.DefaultLimits(), 0) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: stream.RecordBucket, History: 1, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// Event builds a raw event as the gateway stores it: the protobuf envelope
// with the routing headers, on spectora.<resource>.<action>.
func Event(id, eventType, recordID string) *nats.Msg {
	return EventFrom("default", id, eventType, recordID)
}

// EventFrom is Event from a named source.
func EventFrom(source, id, eventType, recordID string) *nats.Msg {
	route := stream.RouteFor(eventType)
	ev := &spectorav1.WebhookEvent{
		Id: id, Type: eventType, Resource: route.Resource, Action: route.Action, RecordId: recordID, Source: source,
		Subject: route.Subject(), ReceivedAt: timestamppb.Now(), SignedAt: timestamppb.Now(),
		ContentType: "application/json", Body: []byte(fmt.Sprintf(`{"type":%q,"id":%q}`, eventType, recordID)),
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		panic(err)
	}
	msg := nats.NewMsg(ev.Subject)
	msg.Data = data
	msg.Header.Set(stream.HeaderContentType, stream.ContentTypeWebhookEvent)
	msg.Header.Set(stream.HeaderEventType, eventType)
	msg.Header.Set(stream.HeaderRecordID, recordID)
	msg.Header.Set(stream.HeaderSource, source)
	return msg
}

// Publish stores a raw event like the gateway does and returns its sequence.
func Publish(t testing.TB, js jetstream.JetStream, id, eventType, recordID string) uint64 {
	t.Helper()
	ack, err := js.PublishMsg(context.Background(), Event(id, eventType, recordID), jetstream.WithMsgID(id), jetstream.WithExpectStream(stream.Raw))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// Runner is a group running in the background of a test.
type Runner struct {
	cancel context.CancelFunc
	done   chan error
}

// Run runs g until Stop or the end of the test.
func Run(t testing.TB, g interface{ Run(context.Context) error }) *Runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- g.Run(ctx) }()
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

// Stop cancels the run and returns what Run returned. Calling it twice is safe.
func (r *Runner) Stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

// ConsumerInfo is the state of a durable consumer, or nil when it does not
// exist (yet).
func ConsumerInfo(t testing.TB, js jetstream.JetStream, streamName, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), streamName, durable)
	if err != nil {
		return nil
	}
	info, err := c.Info(context.Background())
	if err != nil {
		return nil
	}
	return info
}

// WaitDone waits until the durable consumer has settled every message of its
// filter up to stream sequence seq: acknowledged (or terminated) through seq,
// nothing pending, nothing awaiting an ack. Tests wait on this state instead
// of sleeping and asserting that nothing else happened.
func WaitDone(t testing.TB, js jetstream.JetStream, streamName, durable string, seq uint64) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	deadline := time.Now().Add(Patience)
	for {
		info = ConsumerInfo(t, js, streamName, durable)
		if info != nil && info.AckFloor.Stream >= seq && info.NumPending == 0 && info.NumAckPending == 0 {
			return info
		}
		if time.Now().After(deadline) {
			if info == nil {
				t.Fatalf("timed out after %s waiting for consumer %s/%s: it does not exist", Patience, streamName, durable)
			}
			t.Fatalf("timed out after %s waiting for consumer %s/%s settled through %d: ack floor %d, pending %d, ack pending %d, redelivered %d, waiting pulls %d",
				Patience, streamName, durable, seq, info.AckFloor.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StreamInfo is the state of a stream.
func StreamInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// Metric returns the value of the counter or gauge name with exactly labels
// in g, or 0 when there is no such series.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}
