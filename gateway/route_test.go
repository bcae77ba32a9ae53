package gateway

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRouteFor(t *testing.T) {
	tests := []struct {
		eventType string
		want      string
	}{
		{"inspection.confirmed", "spectora.inspection.confirmed"},
		{"agent.updated", "spectora.agent.updated"},
		{"inspection.rescheduled", "spectora.inspection.rescheduled"},
		{"Inspection.Confirmed", "spectora.inspection.confirmed"},
		{"  client.deleted  ", "spectora.client.deleted"},
		{"inspection.report.published", "spectora.inspection.report_published"},
		{"a.b.c.d", "spectora.a.b_c_d"},
		{"inspection.*", "spectora.inspection._"},
		{"inspection.>", "spectora.inspection._"},
		{"inspection.con firmed", "spectora.inspection.con_firmed"},
		{"inspection..confirmed", "spectora.inspection.confirmed"},
		{"ping", "spectora.ping.unknown"},
		{"redrive.enricher", "spectora.redrive_.enricher"},
		{"enriched.x", "spectora.enriched_.x"},
		{"", "spectora.unrouted.unknown"},
		{"...", "spectora.unrouted.unknown"},
		{"   ", "spectora.unrouted.unknown"},
		{"inspektion.bestätigt", "spectora.inspektion.best_tigt"},
		{"agent-profile.updated_v2", "spectora.agent-profile.updated_v2"},
		{"x." + strings.Repeat("y", 100), "spectora.x." + strings.Repeat("y", maxTokenLen)},
	}
	for _, tt := range tests {
		t.Run(tt.eventType, func(t *testing.T) {
			if got := RouteFor(tt.eventType).Subject(); got != tt.want {
				t.Fatalf("RouteFor(%q) = %q, want %q", tt.eventType, got, tt.want)
			}
		})
	}
}

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

func FuzzRouteFor(f *testing.F) {
	for _, s := range []string{"inspection.confirmed", "", "a.b.c", "*.>", "x y.z", "ünïcode.ß", "...", "\x00.\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, eventType string) {
		subj := RouteFor(eventType).Subject()
		if !subjectShape.MatchString(subj) {
			t.Fatalf("RouteFor(%q) = %q: not a safe three-token subject", eventType, subj)
		}
	})
}

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
		subj := RouteFor(typ).Subject()
		if !subjectShape.MatchString(subj) {
			t.Fatalf("unsafe subject %q", subj)
		}
	})
}
