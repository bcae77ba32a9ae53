package eventindex_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/admin"
	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/internal/eventindex"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/stream"
)

func indexed(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	_, js := natstest.JetStream(t, natstest.Server(t))
	natstest.Streams(t, js)
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), eventindex.BucketConfig(0, 1))
	if err != nil {
		t.Fatal(err)
	}
	g, err := consumers.NewGroup(consumers.Config{Name: eventindex.GroupName, Handler: eventindex.Handler(kv), Concurrency: 16}, js)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, g)
	return js, kv
}

// Every event of a record, newest first, from either company, and nothing of
// another record that shares its ID or a prefix.
func TestLookupFindsEveryEventOfARecord(t *testing.T) {
	t.Parallel()
	js, kv := indexed(t)
	ctx := context.Background()
	publish := func(source, typ, id string) uint64 {
		msgID := fmt.Sprintf("msg_%d", rand.Int64())
		ack, err := js.PublishMsg(ctx, natstest.EventFrom(source, msgID, typ, id), jetstream.WithMsgID(msgID))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	var want []uint64
	for _, typ := range []string{"inspection.created", "inspection.confirmed", "inspection.published"} {
		want = append(want, publish("acme", typ, "1234"))
		publish("beta", typ, "1234")             // another company's inspection 1234
		publish("acme", typ, "12345")            // another record
		publish("acme", "agent.updated", "1234") // another resource
	}
	odd := publish("acme", "inspection.created", "a.b c*>")
	last := publish("acme", "ping", "") // no record: not indexed
	natstest.WaitDone(t, js, stream.Raw, eventindex.GroupName, last)

	got, err := eventindex.Lookup(ctx, kv, "acme", "inspection", "1234", 0)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range got {
		seqs = append(seqs, e.Seq)
		if e.Source != "acme" || e.RecordID != "1234" || e.Resource != "inspection" || e.Subject == "" || e.ID == "" {
			t.Errorf("entry %+v", e)
		}
	}
	slices.Reverse(want)
	if !slices.Equal(seqs, want) {
		t.Fatalf("acme's inspection 1234: sequences %v, want %v newest first", seqs, want)
	}
	if got, _ := eventindex.Lookup(ctx, kv, "acme", "inspection", "1234", 2); len(got) != 2 || got[0].Seq != want[0] {
		t.Fatalf("limit 2: %+v", got)
	}
	if got, _ := eventindex.Lookup(ctx, kv, "acme", "inspection", "a.b c*>", 0); len(got) != 1 || got[0].Seq != odd {
		t.Fatalf("an ID that isn't a subject token: %+v", got)
	}
	if got, err := eventindex.Lookup(ctx, kv, "acme", "inspection", "999", 0); err != nil || len(got) != 0 {
		t.Fatalf("unknown record: %v %v", got, err)
	}
	// Replayed, the events are indexed once.
	if _, _, err := admin.New(js).Replay(ctx, stream.Raw, eventindex.GroupName, time.Time{}, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	natstest.WaitDone(t, js, stream.Raw, eventindex.GroupName, last)
	if again, _ := eventindex.Lookup(ctx, kv, "acme", "inspection", "1234", 0); len(again) != len(want) {
		t.Fatalf("after a replay: %d entries, want %d", len(again), len(want))
	}
}

// BenchmarkLookup measures look-ups by record ID in an index of
// INDEX_BENCH_EVENTS entries (default 1,000,000) over INDEX_BENCH_RECORDS
// records (default 100,000) on a file-backed server, and reports p50 and p99:
//
//	go test ./internal/eventindex -run '^$' -bench Lookup -benchtime 2000x
func BenchmarkLookup(b *testing.B) {
	events, records := envInt(b, "INDEX_BENCH_EVENTS", 1_000_000), envInt(b, "INDEX_BENCH_RECORDS", 100_000)
	nc, js := natstest.JetStream(b, natstest.Server(b))
	ctx := context.Background()
	kv, err := js.CreateOrUpdateKeyValue(ctx, eventindex.BucketConfig(0, 1))
	if err != nil {
		b.Fatal(err)
	}
	// The bucket as the indexer leaves it after events events: every
	// revision of every record's entry written, as the indexer writes them
	// (the old revisions are then removed by History 1, as in production).
	start := time.Now()
	ajs, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	per := events / records
	entries := make([][]eventindex.Entry, records)
	for i := range events {
		r := i % records
		id := strconv.Itoa(r)
		entries[r] = append(entries[r], eventindex.Entry{Seq: uint64(i + 1), Subject: "spectora.inspection.updated", ID: "msg_" + strconv.Itoa(i),
			Type: "inspection.updated", Source: "default", Resource: "inspection", RecordID: id, ReceivedAt: start})
		data, _ := json.Marshal(entries[r])
		if _, err := ajs.PublishAsync("$KV."+stream.IndexBucket+"."+enrich.Key("default", "inspection", id), data); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
	case <-time.After(10 * time.Minute):
		b.Fatal("index not written in 10 minutes")
	}
	b.Logf("index of %d events over %d records written in %s", events, records, time.Since(start).Round(time.Millisecond))
	var took []time.Duration
	b.ResetTimer()
	for b.Loop() {
		id := strconv.Itoa(rand.IntN(records))
		t0 := time.Now()
		got, err := eventindex.Lookup(ctx, kv, "default", "inspection", id, 0)
		took = append(took, time.Since(t0))
		if err != nil || len(got) != per {
			b.Fatalf("record %s: %d entries, want %d: %v", id, len(got), per, err)
		}
	}
	b.StopTimer()
	slices.Sort(took)
	q := func(p float64) float64 { return float64(took[int(float64(len(took)-1)*p)].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

func envInt(b *testing.B, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number", name, v)
		}
		return n
	}
	return def
}
