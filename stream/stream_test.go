package stream_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/spectora-stream/spectora-stream/internal/natstest"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/stream"
)

func TestRouteFor(t *testing.T) {
	t.Parallel()
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
		{"dlq.x", "spectora.dlq_.x"},
		{"", "spectora.unrouted.unknown"},
		{"...", "spectora.unrouted.unknown"},
		{"   ", "spectora.unrouted.unknown"},
		{"inspektion.bestätigt", "spectora.inspektion.best_tigt"},
		{"agent-profile.updated_v2", "spectora.agent-profile.updated_v2"},
		{"x." + strings.Repeat("y", 100), "spectora.x." + strings.Repeat("y", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.eventType, func(t *testing.T) {
			if got := stream.RouteFor(tt.eventType).Subject(); got != tt.want {
				t.Fatalf("RouteFor(%q) = %q, want %q", tt.eventType, got, tt.want)
			}
		})
	}
}

var subjectShape = regexp.MustCompile(`^spectora\.[a-z0-9_-]{1,65}\.[a-z0-9_-]{1,64}$`)

func FuzzRouteFor(f *testing.F) {
	for _, s := range []string{"inspection.confirmed", "", "a.b.c", "*.>", "x y.z", "ünïcode.ß", "...", "\x00.\xff", "redrive.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, eventType string) {
		route := stream.RouteFor(eventType)
		subj := route.Subject()
		if !subjectShape.MatchString(subj) {
			t.Fatalf("RouteFor(%q) = %q: not a safe three-token subject", eventType, subj)
		}
		// Every subject built from a route parses back to it, in every stream.
		for _, s := range []string{subj, route.EnrichedSubject(), route.DeadLetterSubject("g")} {
			p, err := stream.ParseSubject(s)
			if err != nil || p.Route != route {
				t.Fatalf("ParseSubject(%q) = %+v, %v; want route %+v", s, p, err, route)
			}
		}
	})
}

func TestSubjectsRoundTrip(t *testing.T) {
	t.Parallel()
	r := stream.Route{Resource: "inspection", Action: "confirmed"}
	tests := []struct {
		subject string
		want    stream.Subject
	}{
		{r.Subject(), stream.Subject{Stream: stream.Raw, Route: r}},
		{r.EnrichedSubject(), stream.Subject{Stream: stream.Enriched, Route: r}},
		{r.DeadLetterSubject("crm"), stream.Subject{Stream: stream.DLQ, Group: "crm", Route: r}},
		{stream.RedriveSubject(stream.Raw, "crm", 7), stream.Subject{Stream: stream.Raw, Group: "crm", Redrive: 7}},
		{stream.RedriveSubject(stream.Enriched, "audit", 9), stream.Subject{Stream: stream.Enriched, Group: "audit", Redrive: 9}},
	}
	for _, tt := range tests {
		got, err := stream.ParseSubject(tt.subject)
		if err != nil || got != tt.want {
			t.Errorf("ParseSubject(%q) = %+v, %v; want %+v", tt.subject, got, err, tt.want)
		}
	}
	if got := stream.RedriveSubject(stream.Raw, "crm", 7); got != "spectora.redrive.crm.7" {
		t.Errorf("raw redrive subject %q", got)
	}
	if got := stream.RedriveSubject(stream.Enriched, "audit", 9); got != "spectora.enriched.redrive.audit.9" {
		t.Errorf("enriched redrive subject %q", got)
	}
	for _, bad := range []string{"", "spectora", "spectora.x", "other.a.b", "spectora.*.b", "spectora.a.b.c.d.e.f",
		"spectora.redrive.crm.x", "spectora.redrive.crm.0", "spectora..b", "spectora.enriched.a.b.c"} {
		if _, err := stream.ParseSubject(bad); !errors.Is(err, stream.ErrNotOurs) {
			t.Errorf("ParseSubject(%q) = %v, want ErrNotOurs", bad, err)
		}
	}
}

// The three streams, with their redrive subjects, coexist on a real server,
// and each subject family lands in its own stream.
func TestStreamsDoNotOverlap(t *testing.T) {
	t.Parallel()
	srv := natstest.Server(t)
	_, js := natstest.JetStream(t, srv)
	ctx := context.Background()
	for _, c := range stream.Configs(stream.DefaultLimits(), time.Hour) {
		if _, err := js.CreateOrUpdateStream(ctx, c); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	r := stream.Route{Resource: "agent", Action: "updated"}
	for subject, want := range map[string]string{
		r.Subject():                                        stream.Raw,
		r.EnrichedSubject():                                stream.Enriched,
		r.DeadLetterSubject("crm"):                         stream.DLQ,
		stream.RedriveSubject(stream.Raw, "crm", 1):        stream.Raw,
		stream.RedriveSubject(stream.Enriched, "audit", 1): stream.Enriched,
	} {
		ack, err := js.Publish(ctx, subject, nil)
		if err != nil || ack.Stream != want {
			t.Errorf("%s landed in %v (%v), want %s", subject, ack, err, want)
		}
	}
	// No group's default filter sees a redrive.
	for _, name := range []string{stream.Raw, stream.Enriched} {
		c, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "probe", FilterSubject: stream.EventSubjects(name)})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := c.Info(ctx)
		if info.NumPending != 1 {
			t.Errorf("%s default filter sees %d messages, want only the event", name, info.NumPending)
		}
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	raw := natstest.Event("msg_1", "inspection.confirmed", "42")
	ev, err := stream.DecodeMsg(raw)
	if err != nil || ev.Webhook.GetId() != "msg_1" || ev.Enriched != nil {
		t.Fatalf("raw: %+v, %v", ev, err)
	}
	enriched, _ := proto.Marshal(&spectorav1.EnrichedEvent{Event: ev.Webhook, RecordStatus: spectorav1.RecordStatus_RECORD_STATUS_FOUND})
	h := nats.Header{}
	h.Set(stream.HeaderContentType, stream.ContentTypeEnrichedEvent)
	ev2, err := stream.Decode(h, enriched)
	if err != nil || ev2.Webhook.GetRecordId() != "42" || ev2.Enriched.GetRecordStatus() != spectorav1.RecordStatus_RECORD_STATUS_FOUND {
		t.Fatalf("enriched: %+v, %v", ev2, err)
	}
	for name, tc := range map[string]struct {
		ct   string
		data []byte
	}{
		"garbage":                {stream.ContentTypeWebhookEvent, []byte{0xff, 0xff}},
		"unknown content type":   {"text/plain", raw.Data},
		"enriched without event": {stream.ContentTypeEnrichedEvent, nil},
	} {
		h := nats.Header{}
		h.Set(stream.HeaderContentType, tc.ct)
		if _, err := stream.Decode(h, tc.data); !errors.Is(err, stream.ErrUndecodable) {
			t.Errorf("%s: %v, want ErrUndecodable", name, err)
		}
	}
}

func TestDeadLetterHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	d := stream.DeadLetter{Group: "crm", OriginalSubject: "spectora.agent.updated", OriginalStream: stream.Raw,
		OriginalSequence: 12, Deliveries: 5, Reason: stream.ReasonMaxDeliveries, Error: "line1\nline2",
		Time: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	h := nats.Header{}
	d.SetHeaders(h)
	got, err := stream.ParseDeadLetter(h)
	d.Error = "line1 line2" // header values never carry control characters
	if err != nil || got != d {
		t.Fatalf("ParseDeadLetter = %+v, %v; want %+v", got, err, d)
	}
	stream.ClearDeadLetter(h)
	got, err = stream.ParseDeadLetter(h)
	if !errors.Is(err, stream.ErrNotDeadLetter) || got.OriginalSequence != 12 || got.OriginalStream != stream.Raw {
		t.Fatalf("after ClearDeadLetter: %+v, %v; want the origin kept and ErrNotDeadLetter", got, err)
	}
}

func TestHeaderValue(t *testing.T) {
	t.Parallel()
	if got := stream.HeaderValue("a\r\nb\x00c"); got != "a  b c" {
		t.Fatalf("HeaderValue = %q", got)
	}
	if got := stream.HeaderValue(strings.Repeat("x", 600)); len(got) != 512 {
		t.Fatalf("len %d", len(got))
	}
	if got := stream.HeaderValue(strings.Repeat("é", 300)); !utf8.ValidString(got) || len(got) > 512 {
		t.Fatalf("cut inside a character: %q", got)
	}
	if got := stream.HeaderValue("bad\xffbyte"); !utf8.ValidString(got) {
		t.Fatalf("invalid UTF-8 kept: %q", got)
	}
	src := nats.Header{"Nats-Msg-Id": {"x"}, "Nats-Expected-Stream": {"y"}, "Spectora-Source": {"default"}, "traceparent": {"00-…"}}
	dst := nats.Header{}
	stream.CopyHeaders(dst, src)
	if fmt.Sprint(dst) != fmt.Sprint(nats.Header{"Spectora-Source": {"default"}, "traceparent": {"00-…"}}) {
		t.Fatalf("CopyHeaders = %v", dst)
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, tt := range []struct {
		filter, subject string
		want            bool
	}{
		{"spectora.*.*", "spectora.inspection.confirmed", true},
		{"spectora.*.*", "spectora.redrive.audit.7", false},
		{"spectora.redrive.audit.*", "spectora.redrive.audit.7", true},
		{"spectora.>", "spectora.inspection.confirmed", true},
		{"spectora.>", "spectora", false},
		{"spectora.agent.*", "spectora.inspection.confirmed", false},
		{"spectora.inspection.confirmed", "spectora.inspection.confirmed", true},
		{"spectora.inspection", "spectora.inspection.confirmed", false},
	} {
		if got := stream.SubjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("SubjectMatches(%q, %q) = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
}
