// Package eventindex finds every event stored for one Spectora record. The
// indexer group reads the raw stream and keeps, per record, one key-value
// entry (bucket spectora_index, key <source>.<resource>.<id>) listing its
// events; a look-up is one direct get of the key's last value, however many
// events and records the streams hold. Writers of one record are serialised
// by the key's revision.
package eventindex

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/stream"
)

// GroupName is the built-in indexer group's name.
const GroupName = "indexer"

// Entry is one raw event as the index holds it.
type Entry struct {
	// Seq is the event's sequence in SPECTORA.
	Seq uint64 `json:"seq"`
	// Subject is the subject it was published on.
	Subject string `json:"subject"`
	// ID is its message ID: the svix-id, or the reconciler's.
	ID string `json:"id"`
	// Type is the event type as sent.
	Type string `json:"type,omitempty"`
	// Source, Resource and RecordID name the record.
	Source   string `json:"source"`
	Resource string `json:"resource"`
	RecordID string `json:"record_id"`
	// ReceivedAt is when the gateway (or the reconciler) stored it.
	ReceivedAt time.Time `json:"received_at"`
	// Origin is "reconcile" on events the reconciler published.
	Origin string `json:"origin,omitempty"`
}

// MaxEntries bounds the events kept per record: the newest.
const MaxEntries = 1000

// BucketConfig is the index bucket; entries live as long as the raw stream
// keeps events (maxAge; 0: forever).
func BucketConfig(maxAge time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      stream.IndexBucket,
		Description: "Per Spectora record: the events stored for it (indexer group)",
		TTL:         maxAge,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// Handler is the indexer group's handler: it adds the event to its
// record's entry. Events without a record ID and redriven copies (the
// original is indexed) are skipped; an event already in the entry (a
// redelivery, a replay) is not added again.
func Handler(kv jetstream.KeyValue) consumers.Handler {
	return func(ctx context.Context, m *consumers.Message) error {
		ev := m.Event
		if ev.GetRecordId() == "" || m.Header.Get(stream.HeaderOriginalSequence) != "" || m.Stream != stream.Raw {
			return nil
		}
		e := Entry{Seq: m.Sequence, Subject: m.Subject, ID: ev.GetId(), Type: ev.GetType(), Source: ev.GetSource(),
			Resource: ev.GetResource(), RecordID: ev.GetRecordId(), ReceivedAt: ev.GetReceivedAt().AsTime(), Origin: m.Header.Get(stream.HeaderOrigin)}
		return add(ctx, kv, enrich.Key(e.Source, e.Resource, e.RecordID), e)
	}
}

func add(ctx context.Context, kv jetstream.KeyValue, key string, e Entry) error {
	err := natsx.UpdateKey(ctx, kv, key, func(current []byte) ([]byte, error) {
		var entries []Entry
		_ = json.Unmarshal(current, &entries) // missing or unreadable: start over
		if slices.ContainsFunc(entries, func(x Entry) bool { return x.Seq == e.Seq }) {
			return nil, natsx.ErrUnchanged
		}
		entries = append(entries, e)
		slices.SortFunc(entries, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
		if len(entries) > MaxEntries {
			entries = entries[len(entries)-MaxEntries:]
		}
		return json.Marshal(entries)
	})
	if err != nil {
		return fmt.Errorf("index %s: %w", key, err)
	}
	return nil
}

// Lookup returns the newest limit events stored for one record, newest first
// (limit ≤ 0 or above MaxEntries: MaxEntries).
func Lookup(ctx context.Context, kv jetstream.KeyValue, source, resource, id string, limit int) ([]Entry, error) {
	if limit <= 0 || limit > MaxEntries {
		limit = MaxEntries
	}
	key := enrich.Key(source, resource, id)
	cur, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", key, err)
	}
	var out []Entry
	if err := json.Unmarshal(cur.Value(), &out); err != nil {
		return nil, fmt.Errorf("index entry %s is unreadable: %w", key, err)
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	slices.Reverse(out)
	return out, nil
}

// Find is Lookup for a record whose source or resource may be unknown: ""
// matches any. It reads every matching key (a filtered key listing, served
// from the bucket's subject index), newest events first.
func Find(ctx context.Context, kv jetstream.KeyValue, source, resource, id string, limit int) ([]Entry, error) {
	if source != "" && resource != "" {
		return Lookup(ctx, kv, source, resource, id, limit)
	}
	if limit <= 0 || limit > MaxEntries {
		limit = MaxEntries
	}
	filter := cmp.Or(source, "*") + "." + cmp.Or(resource, "*") + "." + stream.IDToken(id)
	keys, err := kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", filter, err)
	}
	defer func() { _ = keys.Stop() }()
	var out []Entry
	for key := range keys.Keys() {
		src, rest, _ := strings.Cut(key, ".")
		res, _, _ := strings.Cut(rest, ".")
		entries, err := Lookup(ctx, kv, src, res, id, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, entries...)
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(b.Seq, a.Seq) })
	return out[:min(len(out), limit)], nil
}
