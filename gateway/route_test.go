package gateway

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spectora-stream/spectora-stream/stream"
)

func TestExtract(t *testing.T) {
	tests := []struct {
		name     string
		fields   Fields
		body     string
		wantType string
		wantID   string
	}{
		{"type and numeric id", DefaultFields(), `{"type":"inspection.confirmed","id":42}`, "inspection.confirmed", "42"},
		{"event and data.id", DefaultFields(), `{"event":"agent.updated","data":{"id":"abc"}}`, "agent.updated", "abc"},
		{"event_type and record_id", DefaultFields(), `{"event_type":"client.created","record_id":7}`, "client.created", "7"},
		{"first path wins", DefaultFields(), `{"type":"a.b","event":"c.d","id":1,"record_id":2}`, "a.b", "1"},
		{"non-string type skipped", DefaultFields(), `{"type":5,"event":"c.d"}`, "c.d", ""},
		{"empty type skipped", DefaultFields(), `{"type":" ","event":"c.d"}`, "c.d", ""},
		{"big integer id kept exactly", DefaultFields(), `{"type":"a.b","id":12345678901234567890}`, "a.b", "12345678901234567890"},
		{"custom paths", Fields{Type: []string{"meta.kind"}, ID: []string{"payload.inspection.id"}}, `{"meta":{"kind":"inspection.confirmed"},"payload":{"inspection":{"id":9}}}`, "inspection.confirmed", "9"},
		{"not json", DefaultFields(), `not json`, "", ""},
		{"array", DefaultFields(), `[{"type":"a.b"}]`, "", ""},
		{"empty", DefaultFields(), ``, "", ""},
		{"path through non-object", DefaultFields(), `{"data":"x","type":"a.b"}`, "a.b", ""},
		{"invalid json after the fields", DefaultFields(), `{"type":"a.b","id":1,`, "", ""},
		{"leading space", DefaultFields(), " \n\t{\"type\":\"a.b\"}", "a.b", ""},
		{"escaped type", DefaultFields(), `{"type":"inspection.\u0063onfirmed"}`, "inspection.confirmed", ""},
		{"invalid UTF-8 becomes U+FFFD", DefaultFields(), "{\"type\":\"a.b\xff\"}", "a.b\uFFFD", ""},
		{"number kept as written", DefaultFields(), `{"type":"a.b","id":1e3}`, "a.b", "1e3"},
		{"key with gjson syntax", Fields{Type: []string{"meta.k*nd"}, ID: []string{"a#b"}}, `{"meta":{"kind":"x.y","k*nd":"a.b"},"a#b":5}`, "a.b", "5"},
		{"over-long type skipped", DefaultFields(), `{"type":"` + strings.Repeat("a", 300) + `","event":"c.d"}`, "c.d", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, id := tt.fields.Extract([]byte(tt.body))
			if typ != tt.wantType || id != tt.wantID {
				t.Fatalf("Extract = (%q, %q), want (%q, %q)", typ, id, tt.wantType, tt.wantID)
			}
		})
	}
}

var subjectShape = regexp.MustCompile(`^spectora\.[a-z0-9_-]{1,64}\.[a-z0-9_-]{1,64}$`)

func FuzzExtract(f *testing.F) {
	f.Add([]byte(`{"type":"inspection.confirmed","id":42}`))
	f.Add([]byte(`{"data":{"id":"x"},"event":"a.b"}`))
	f.Add([]byte(`{"type":{"nested":true},"id":[1]}`))
	f.Add([]byte(`nope`))
	f.Fuzz(func(t *testing.T, body []byte) {
		typ, id := DefaultFields().Extract(body)
		if len(id) > maxRecordIDLen {
			t.Fatalf("record id of %d bytes", len(id))
		}
		if typ != "" && !utf8.ValidString(typ) && utf8.Valid(body) {
			t.Fatalf("invalid UTF-8 type %q from valid UTF-8 body", typ)
		}
		subj := stream.RouteFor(typ).Subject()
		if !subjectShape.MatchString(subj) {
			t.Fatalf("unsafe subject %q", subj)
		}
	})
}
