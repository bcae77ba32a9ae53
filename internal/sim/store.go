// Package sim simulates Spectora for demos, tests and load: a fake API serving
// JSON:API records and a Svix-faithful webhook sender whose events match those
// records.
package sim

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Resource types as the API names them: agents are "connections", clients
// are "contacts".
const (
	typeInspection = "inspections"
	typeAgent      = "connections"
	typeClient     = "contacts"
)

// record is one simulated Spectora record.
type record struct {
	ID            string
	Type          string
	Attributes    map[string]any
	Relationships map[string]any
	Deleted       bool
	// UpdatedAt is the last change, also attributes.updated_at.
	UpdatedAt time.Time
}

// Store holds the records the sender created, so the API answers consistently
// with the events. Unknown IDs get a made-up record derived from the ID (so a
// hand-sent webhook enriches too) unless Strict is set.
type Store struct {
	mu      sync.Mutex
	records map[string]*record // key: type/id
	nextID  int64
	Strict  bool
	// lastChange is the latest UpdatedAt handed out.
	lastChange time.Time
}

// NewStore returns an empty store whose IDs start at first.
func NewStore(first int64) *Store {
	return &Store{records: map[string]*record{}, nextID: first}
}

func key(typ, id string) string { return typ + "/" + id }

var (
	streets = []string{"Maple Ave", "Oak St", "Pine Rd", "Cedar Ln", "Elm Dr", "Birch Way"}
	cities  = []string{"Austin, TX", "Denver, CO", "Raleigh, NC", "Boise, ID", "Tampa, FL"}
	first   = []string{"Ava", "Liam", "Mia", "Noah", "Zoe", "Ethan", "Ivy", "Lucas"}
	last    = []string{"Nguyen", "Garcia", "Smith", "Patel", "Kim", "Brown", "Lopez"}
)

func person(r *rand.Rand) (string, string) {
	f, l := first[r.IntN(len(first))], last[r.IntN(len(last))]
	return f + " " + l, fmt.Sprintf("%s.%s@example.com", toLower(f), toLower(l))
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// synth makes a deterministic record for id.
func synth(typ, id string) *record {
	seed, _ := strconv.ParseUint(id, 10, 64)
	r := rand.New(rand.NewPCG(seed, uint64(len(typ))))
	rec := &record{ID: id, Type: typ, Attributes: map[string]any{}, Relationships: map[string]any{}}
	switch typ {
	case typeInspection:
		rec.Attributes = map[string]any{
			"address":      fmt.Sprintf("%d %s, %s", 100+r.IntN(9800), streets[r.IntN(len(streets))], cities[r.IntN(len(cities))]),
			"scheduled_at": time.Date(2026, 12, 1+r.IntN(28), 8+r.IntN(9), 0, 0, 0, time.UTC).Format(time.RFC3339),
			"status":       "scheduled",
			"confirmed":    false,
			"fee":          300 + r.IntN(400),
		}
	case typeAgent:
		name, email := person(r)
		rec.Attributes = map[string]any{"name": name, "email": email, "company": "Keller Realty", "phone": fmt.Sprintf("555-%04d", r.IntN(10000))}
	case typeClient:
		name, email := person(r)
		rec.Attributes = map[string]any{"name": name, "email": email}
	}
	return rec
}

// create adds a new record of typ and returns its ID.
func (s *Store) create(typ string, rel map[string]any) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := strconv.FormatInt(s.nextID, 10)
	rec := synth(typ, id)
	for k, v := range rel {
		rec.Relationships[k] = v
	}
	s.touch(rec)
	s.records[key(typ, id)] = rec
	return id
}

// touch stamps a change: updated_at with nanoseconds, strictly after the
// store's previous change, so list filters and versions tell every change
// apart.
func (s *Store) touch(rec *record) {
	now := time.Now().UTC()
	if !now.After(s.lastChange) {
		now = s.lastChange.Add(time.Microsecond)
	}
	s.lastChange = now
	rec.UpdatedAt = now
	rec.Attributes["updated_at"] = now.Format(time.RFC3339Nano)
}

// update changes one attribute of an existing record.
func (s *Store) update(typ, id, attr string, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.records[key(typ, id)]; ok {
		rec.Attributes[attr] = value
		s.touch(rec)
	}
}

// remove marks a record deleted: the API answers 404 from now on.
func (s *Store) remove(typ, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.records[key(typ, id)]; ok {
		rec.Deleted = true
	} else {
		s.records[key(typ, id)] = &record{ID: id, Type: typ, Deleted: true}
	}
}

// get returns the record's JSON:API document, or false when it is gone or
// (with Strict) unknown.
func (s *Store) get(typ, id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[key(typ, id)]
	if !ok {
		if s.Strict {
			return nil, false
		}
		rec = synth(typ, id)
	}
	if rec.Deleted {
		return nil, false
	}
	return map[string]any{"data": rec.object()}, true
}

// object is the record's JSON:API resource object.
func (rec *record) object() map[string]any {
	attrs := map[string]any{}
	for k, v := range rec.Attributes {
		attrs[k] = v
	}
	doc := map[string]any{"id": rec.ID, "type": rec.Type, "attributes": attrs}
	if len(rec.Relationships) > 0 {
		doc["relationships"] = rec.Relationships
	}
	return doc
}

// list returns the resource objects of typ's records updated at or after
// since, oldest change first, page number (from 1) of the given size, and
// whether more follow. Deleted records are not listed.
func (s *Store) list(typ string, since time.Time, number, size int) ([]map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []*record
	for _, rec := range s.records {
		if rec.Type == typ && !rec.Deleted && !rec.UpdatedAt.Before(since) {
			recs = append(recs, rec)
		}
	}
	slices.SortFunc(recs, func(a, b *record) int {
		return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), cmp.Compare(len(a.ID), len(b.ID)), cmp.Compare(a.ID, b.ID))
	})
	from := (number - 1) * size
	if from >= len(recs) {
		return []map[string]any{}, false
	}
	to := min(from+size, len(recs))
	out := make([]map[string]any, 0, to-from)
	for _, rec := range recs[from:to] {
		out = append(out, rec.object())
	}
	return out, to < len(recs)
}

// API resource types, as the list and record paths name them.
const (
	TypeInspection = typeInspection
	TypeAgent      = typeAgent
	TypeClient     = typeClient
)

// Create adds a record of typ (TypeInspection, TypeAgent, TypeClient) as
// Spectora would on a change nobody is told about, and returns its ID.
func (s *Store) Create(typ string) string { return s.create(typ, nil) }

// Update sets one attribute of a record and stamps updated_at.
func (s *Store) Update(typ, id, attr string, value any) { s.update(typ, id, attr, value) }
