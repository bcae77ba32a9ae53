package enrich

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/stream"
)

// DefaultVersionField is where a record's version is read, as a path into
// its JSON:API resource object: its update time. Not confirmed by Spectora's
// public documentation.
const DefaultVersionField = "attributes.updated_at"

// Versions remembers, per record (Key), the latest version the system saw and
// which of the tracked event types it saw for it. The enricher writes it; the
// reconciler reads it to tell a change nobody announced from one that
// arrived by webhook.
type Versions struct {
	kv    jetstream.KeyValue
	field string
}

// VersionEntry is one record's entry.
type VersionEntry struct {
	// Version is the latest version seen; "" when only types were recorded.
	Version string `json:"v,omitempty"`
	// At is when the entry last changed.
	At time.Time `json:"at"`
	// Types are the tracked event types seen for the record (rules' types).
	Types []string `json:"types,omitempty"`
}

// NewVersions keeps versions in kv (VersionBucketConfig); field is the path
// of the version in a resource object, default DefaultVersionField.
func NewVersions(kv jetstream.KeyValue, field string) *Versions {
	if field == "" {
		field = DefaultVersionField
	}
	return &Versions{kv: kv, field: field}
}

// VersionBucketConfig is the bucket of versions: entries live for ttl after
// their last change, which bounds how far back a reconciliation can tell
// seen changes from missed ones.
func VersionBucketConfig(ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      stream.VersionBucket,
		Description: "Per Spectora record: the latest version the system saw (reconciler)",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// Of is the version of a JSON:API document {"data": {...}}: the value at the
// version field or, when the record has none, a hash of the resource object.
func (v *Versions) Of(doc []byte) string {
	if r := gjson.GetBytes(doc, "data."+v.field); r.Exists() && r.Type != gjson.Null && r.String() != "" {
		return r.String()
	}
	data := gjson.GetBytes(doc, "data")
	sum := sha256.Sum256([]byte(data.Raw))
	return "sha256:" + hex.EncodeToString(sum[:16])
}

// Get returns key's entry; false when there is none.
func (v *Versions) Get(ctx context.Context, key string) (VersionEntry, bool, error) {
	entry, err := v.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return VersionEntry{}, false, nil
	}
	if err != nil {
		return VersionEntry{}, false, err
	}
	var e VersionEntry
	_ = json.Unmarshal(entry.Value(), &e) // unreadable: as if nothing was seen
	return e, true, nil
}

// Saw records that the system saw version (unless "") and eventType (unless
// "") of key's record. A version only replaces an older one (Newer): of two
// instances fetching one record, the later state stays. Concurrent writers
// are serialised by the bucket's revisions.
func (v *Versions) Saw(ctx context.Context, key, version, eventType string) error {
	return natsx.UpdateKey(ctx, v.kv, key, func(current []byte) ([]byte, error) {
		var e VersionEntry
		_ = json.Unmarshal(current, &e) // missing or unreadable: start over
		changed := false
		if version != "" && (e.Version == "" || Newer(version, e.Version)) {
			e.Version, changed = version, true
		}
		if eventType != "" && !slices.Contains(e.Types, eventType) {
			e.Types, changed = append(e.Types, eventType), true
		}
		if !changed {
			return nil, natsx.ErrUnchanged
		}
		e.At = time.Now().UTC()
		return json.Marshal(e)
	})
}

// Newer reports whether version a replaces b: later as times when both are
// RFC 3339, otherwise whenever they differ (a hash changes with the record;
// the last writer wins).
func Newer(a, b string) bool {
	ta, errA := time.Parse(time.RFC3339Nano, a)
	tb, errB := time.Parse(time.RFC3339Nano, b)
	if errA == nil && errB == nil {
		return ta.After(tb)
	}
	return a != b
}

// Covers reports whether an entry's version is the same as, or (both being
// RFC 3339 times) later than, version: the system has seen that state of the
// record or a later one. Versions that aren't times (a hash, a counter) cover
// only themselves.
func (e VersionEntry) Covers(version string) bool {
	if e.Version == "" {
		return false
	}
	if e.Version == version {
		return true
	}
	seen, errA := time.Parse(time.RFC3339Nano, e.Version)
	listed, errB := time.Parse(time.RFC3339Nano, version)
	return errA == nil && errB == nil && !seen.Before(listed)
}
