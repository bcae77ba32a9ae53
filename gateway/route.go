package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Fields says where the event type and record ID sit in a webhook body, as
// dotted paths tried in order ("data.id" is the "id" member of the "data" object).
// Spectora's exact payload shape is not public, hence the configurable lists.
type Fields struct {
	Type []string
	ID   []string
}

// DefaultFields are the paths tried when none are configured.
func DefaultFields() Fields {
	return Fields{
		Type: []string{"type", "event", "event_type"},
		ID:   []string{"id", "data.id", "record_id"},
	}
}

// maxRecordIDLen bounds a record ID read from the body; maxTypeLen an event
// type. A longer "type" is no event type: the body is stored as unrouted,
// byte for byte, so nothing is lost, and the envelope stays small.
const (
	maxRecordIDLen = 256
	maxTypeLen     = 256
)

// Extract reads the event type and record ID from a JSON body. A body that is not
// a JSON object, or has no string at any type path, yields an empty type. The
// record ID may be a JSON string or number (kept exactly, even past 2^53).
//
// Only the objects on the configured paths are decoded; every other value stays
// raw, which keeps the per-webhook cost flat for large payloads.
func (f Fields) Extract(body []byte) (eventType, recordID string) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", ""
	}
	cache := map[string]map[string]json.RawMessage{"": doc}
	for _, p := range f.Type {
		var s string
		if raw := lookup(cache, p); raw != nil && len(raw) <= maxTypeLen+2 && json.Unmarshal(raw, &s) == nil && strings.TrimSpace(s) != "" {
			eventType = s
			break
		}
	}
	for _, p := range f.ID {
		raw := lookup(cache, p)
		if raw == nil {
			continue
		}
		var id string
		if json.Unmarshal(raw, &id) != nil {
			var n json.Number
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if dec.Decode(&n) != nil {
				continue
			}
			id = n.String()
		}
		if id != "" && len(id) <= maxRecordIDLen {
			recordID = id
			break
		}
	}
	return eventType, recordID
}

// lookup follows a dotted path through nested JSON objects, decoding each
// intermediate object once (cache holds them by path prefix).
func lookup(cache map[string]map[string]json.RawMessage, path string) json.RawMessage {
	parent, key := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		parent, key = path[:i], path[i+1:]
	}
	obj, ok := cache[parent]
	if !ok {
		raw := lookup(cache, parent)
		if raw == nil || json.Unmarshal(raw, &obj) != nil {
			obj = nil
		}
		cache[parent] = obj
	}
	return obj[key]
}
