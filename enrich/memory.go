package enrich

import (
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/spectora"
)

// memory keeps recently seen records in this process, least recently used
// first out, within a byte budget. A copy answers an event only under the
// rule the KV bucket's copies are read by: fetched at or after the event was
// received, and younger than the bucket's TTL. (Another instance may have
// stored a newer copy in the bucket meanwhile; either satisfies the rule.)
type memory struct {
	mu     sync.Mutex // orders remember's compare, remove and add
	lru    *lru.Cache[string, spectora.Record]
	bytes  atomic.Int64 // of the records held
	budget int64
	ttl    time.Duration
}

// memoryEntryOverhead is a record's bookkeeping beyond its body and path,
// roughly: the key, the list element and the struct.
const memoryEntryOverhead = 200

func newMemory(budget int64, ttl time.Duration) *memory {
	m := &memory{budget: budget, ttl: ttl}
	// The count bound only backs up the byte budget: entries of 256 bytes.
	m.lru, _ = lru.NewWithEvict(int(max(1, budget/256)), func(_ string, r spectora.Record) { m.bytes.Add(-recordSize(r)) })
	return m
}

func recordSize(r spectora.Record) int64 {
	return int64(len(r.Body)+len(r.Path)) + memoryEntryOverhead
}

// recall returns key's copy if it answers an event received at eventTime.
func (m *memory) recall(key string, eventTime time.Time) (spectora.Record, bool) {
	if m == nil {
		return spectora.Record{}, false
	}
	rec, ok := m.lru.Get(key)
	if !ok || rec.FetchedAt.Before(eventTime) || time.Since(rec.FetchedAt) >= m.ttl {
		return spectora.Record{}, false
	}
	return rec, true
}

// remember keeps rec unless a copy fetched later is held. Records that were
// not fetched are not kept (nor are they in the bucket), and neither is a
// record over 1/64 of the budget, so a few large records can't push out
// everything else.
func (m *memory) remember(key string, rec spectora.Record) {
	if m == nil || rec.Status == spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED {
		return
	}
	size := recordSize(rec)
	if size > m.budget/64 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.lru.Peek(key); ok {
		if old.FetchedAt.After(rec.FetchedAt) {
			return
		}
		m.lru.Remove(key) // replacing doesn't call the eviction callback; removing does
	}
	m.lru.Add(key, rec)
	m.bytes.Add(size)
	for m.bytes.Load() > m.budget {
		if _, _, ok := m.lru.RemoveOldest(); !ok {
			break
		}
	}
}
