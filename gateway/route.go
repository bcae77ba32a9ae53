package gateway

import (
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
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
// The body is validated once and the paths are read in place by gjson,
// without decoding anything else: no maps, and a cost that stays flat for
// large payloads. Where a key appears twice in one object the first wins;
// a path component that is a number also indexes an array.
func (f Fields) Extract(body []byte) (eventType, recordID string) {
	if !isObject(body) || !gjson.ValidBytes(body) {
		return "", ""
	}
	for _, p := range f.Type {
		r := gjson.GetBytes(body, gjsonPath(p))
		if r.Type == gjson.String && len(r.Raw) <= maxTypeLen+2 && strings.TrimSpace(r.Str) != "" {
			eventType = validUTF8(r.Str)
			break
		}
	}
	for _, p := range f.ID {
		r := gjson.GetBytes(body, gjsonPath(p))
		var id string
		switch r.Type {
		case gjson.String:
			id = validUTF8(r.Str)
		case gjson.Number:
			id = r.Raw // the literal, exactly as sent
		}
		if id != "" && len(id) <= maxRecordIDLen {
			recordID = id
			break
		}
	}
	return eventType, recordID
}

// isObject reports whether body's first non-space byte opens an object.
func isObject(body []byte) bool {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// validUTF8 replaces invalid bytes with U+FFFD, as encoding/json does: the
// type and ID go into protobuf strings, which must be UTF-8.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// gjsonPath turns a dotted path into gjson's syntax, each component escaped
// so that a key holding *, ?, # or @ is read as a key. Plain paths (letters,
// digits, _ and -) are already in it and cost nothing.
func gjsonPath(dotted string) string {
	plain := true
	for i := 0; i < len(dotted); i++ {
		c := dotted[i]
		if !plainPathByte(c) {
			plain = false
			break
		}
	}
	if plain {
		return dotted
	}
	parts := strings.Split(dotted, ".")
	for i, p := range parts {
		parts[i] = gjson.Escape(p)
	}
	return strings.Join(parts, ".")
}

// plainPathByte reports whether c means the same in a dotted path and in
// gjson's syntax.
func plainPathByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}
