package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/spectora-stream/spectora-stream/internal/eventindex"
	"github.com/spectora-stream/spectora-stream/stream"
)

type eventsCmd struct {
	Tail eventsTailCmd `cmd:"" help:"Print the newest events of a stream, decoded; --follow keeps printing new ones."`
	Get  eventsGetCmd  `cmd:"" help:"Print one event by its sequence in a stream, decoded."`
	Find eventsFindCmd `cmd:"" help:"List every event stored for one record, newest first (needs the indexer group)."`
}

type eventsFindCmd struct {
	NATS     clientFlags `embed:""`
	Record   string      `arg:"" help:"The record's ID, e.g. 1234."`
	Resource string      `name:"resource" short:"r" default:"inspection" help:"The record's resource: inspection, agent, client."`
	Source   string      `name:"source" default:"default" help:"The webhook source (Spectora company) the record belongs to."`
	Last     int         `name:"last" short:"n" default:"20" help:"How many of its newest events to list."`
	Full     bool        `name:"full" help:"Print each event decoded from SPECTORA, as events get does."`
}

func (c *eventsFindCmd) Run(ctx context.Context) error {
	if c.Last < 1 {
		return usageError{fmt.Errorf("--last %d: want at least 1", c.Last)}
	}
	conn, js, err := c.NATS.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	kv, err := js.KeyValue(ctx, stream.IndexBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("no index (bucket %s): the %s group keeps it; add it to CONSUMER_GROUPS", stream.IndexBucket, eventindex.GroupName)
	}
	if err != nil {
		return err
	}
	entries, err := eventindex.Lookup(ctx, kv, c.Source, c.Resource, c.Record, c.Last)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Printf("no events indexed for %s %s of source %s\n", c.Resource, c.Record, c.Source)
		return nil
	}
	raw, err := js.Stream(ctx, stream.Raw)
	if err != nil {
		return err
	}
	f := eventsFormat{Stream: stream.Raw}
	for _, e := range entries {
		if !c.Full {
			origin := ""
			if e.Origin != "" {
				origin = "  (" + e.Origin + ")"
			}
			fmt.Printf("%s #%d  %s  %-32s %s%s\n", stream.Raw, e.Seq, e.ReceivedAt.UTC().Format(time.RFC3339), e.Subject, e.ID, origin)
			continue
		}
		m, err := raw.GetMsg(ctx, e.Seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			fmt.Printf("%s #%d  (no longer stored: removed by the stream's limits)\n\n", stream.Raw, e.Seq)
			continue
		}
		if err != nil {
			return err
		}
		if err := f.print(os.Stdout, m.Sequence, m.Subject, m.Time, m.Header, m.Data); err != nil {
			return err
		}
	}
	return nil
}

// eventsFormat is how events print.
type eventsFormat struct {
	Stream string `name:"stream" short:"s" default:"SPECTORA" enum:"SPECTORA,SPECTORA_ENRICHED,SPECTORA_DLQ" help:"Stream: SPECTORA (webhooks), SPECTORA_ENRICHED (with records) or SPECTORA_DLQ (dead letters)."`
	JSON   bool   `name:"json" help:"One JSON object per event (headers, envelope, body) instead of text."`
}

type eventsTailCmd struct {
	NATS clientFlags `embed:""`
	eventsFormat
	Subject string `name:"subject" placeholder:"FILTER" help:"Only events on subjects matching this filter, e.g. spectora.inspection.*"`
	Last    int    `name:"last" short:"n" default:"10" help:"How many of the newest events to print first; 0 prints only new ones (with --follow)."`
	Follow  bool   `name:"follow" short:"f" help:"Keep printing events as they are stored, until Ctrl-C."`
}

func (c *eventsTailCmd) Run(ctx context.Context) error {
	if c.Last < 0 {
		return usageError{fmt.Errorf("--last %d: must not be negative", c.Last)}
	}
	conn, s, err := c.NATS.openStream(ctx, c.Stream)
	if err != nil {
		return err
	}
	defer conn.Close()
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	// Unfiltered, the newest --last events are the last --last sequences.
	// Filtered, they are somewhere in the last part of the stream: read at
	// most that much and keep the last --last.
	window := uint64(100_000)
	if c.Subject == "" {
		window = uint64(c.Last)
	}
	start := info.State.FirstSeq
	if info.State.LastSeq > window {
		start = max(start, info.State.LastSeq-window+1)
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(start, 1)}
	if c.Subject != "" {
		cfg.FilterSubjects = []string{c.Subject}
	}
	if c.Last == 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy, FilterSubjects: cfg.FilterSubjects}
	}
	oc, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	// The backlog: everything up to the stream's last sequence now.
	var ring []jetstream.Msg
	for c.Last > 0 && info.State.Msgs > 0 {
		m, err := oc.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			return err
		}
		ring = append(ring, m)
		if len(ring) > c.Last {
			ring = ring[1:]
		}
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			break
		}
	}
	for _, m := range ring {
		if err := c.print(os.Stdout, m); err != nil {
			return err
		}
	}
	if len(ring) == 0 && !c.Follow {
		fmt.Printf("no events in %s%s (its subjects: %s)\n", c.Stream, matching(c.Subject), strings.Join(info.Config.Subjects, " "))
	}
	for c.Follow && ctx.Err() == nil {
		m, err := oc.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			return err
		}
		if err := c.print(os.Stdout, m); err != nil {
			return err // stdout closed: tail -f | head
		}
	}
	return nil
}

func matching(subject string) string {
	if subject == "" {
		return ""
	}
	return " on " + subject
}

func (c *eventsTailCmd) print(w io.Writer, m jetstream.Msg) error {
	md, _ := m.Metadata()
	var seq uint64
	var at time.Time
	if md != nil {
		seq, at = md.Sequence.Stream, md.Timestamp
	}
	return c.eventsFormat.print(w, seq, m.Subject(), at, m.Headers(), m.Data())
}

type eventsGetCmd struct {
	NATS clientFlags `embed:""`
	eventsFormat
	Seq uint64 `arg:"" help:"The event's sequence in the stream (seq in send's answer, or from events tail)."`
}

func (c *eventsGetCmd) Run(ctx context.Context) error {
	conn, s, err := c.NATS.openStream(ctx, c.Stream)
	if err != nil {
		return err
	}
	defer conn.Close()
	m, err := s.GetMsg(ctx, c.Seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%s has no event %d", c.Stream, c.Seq)
	}
	if err != nil {
		return err
	}
	return c.print(os.Stdout, m.Sequence, m.Subject, m.Time, m.Header, m.Data)
}

// print writes one stored message decoded: as text, or as one JSON object,
// in one Write.
func (f eventsFormat) print(w io.Writer, seq uint64, subject string, at time.Time, h nats.Header, data []byte) error {
	var b bytes.Buffer
	f.render(&b, seq, subject, at, h, data)
	_, err := w.Write(b.Bytes())
	return err
}

func (f eventsFormat) render(w *bytes.Buffer, seq uint64, subject string, at time.Time, h nats.Header, data []byte) {
	ev, decodeErr := stream.Decode(h, data)
	if f.JSON {
		out := map[string]any{"stream": f.Stream, "seq": seq, "subject": subject, "time": at.UTC(), "headers": h}
		if decodeErr != nil {
			out["error"] = decodeErr.Error()
		} else {
			var msg []byte
			if ev.Enriched != nil {
				msg, _ = protojson.Marshal(ev.Enriched)
			} else {
				msg, _ = protojson.Marshal(ev.Webhook)
			}
			out["event"] = json.RawMessage(msg)
			if json.Valid(ev.Webhook.GetBody()) {
				out["body"] = json.RawMessage(ev.Webhook.GetBody())
			}
		}
		line, _ := json.Marshal(out)
		fmt.Fprintf(w, "%s\n", line)
		return
	}
	fmt.Fprintf(w, "%s #%d  %s  %s\n", f.Stream, seq, subject, at.UTC().Format(time.RFC3339))
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-28s %s\n", k+":", strings.Join(h[k], ", "))
	}
	if decodeErr != nil {
		fmt.Fprintf(w, "  (%d bytes that don't decode: %v)\n\n", len(data), decodeErr)
		return
	}
	e := ev.Webhook
	fmt.Fprintf(w, "  event: id=%s type=%q record=%q source=%s", e.GetId(), e.GetType(), e.GetRecordId(), e.GetSource())
	if e.GetSignedAt() != nil {
		fmt.Fprintf(w, " signed=%s", e.GetSignedAt().AsTime().UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, " received=%s\n", e.GetReceivedAt().AsTime().UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "  body (%s):\n%s\n", e.GetContentType(), indentJSON(e.GetBody()))
	if e.GetRecordVersion() != "" {
		// A reconciled event: the record came with it from a list.
		fmt.Fprintf(w, "  reconciled: version %s, listed %s\n", e.GetRecordVersion(), e.GetRecordListedAt().AsTime().UTC().Format(time.RFC3339Nano))
	}
	if en := ev.Enriched; en != nil {
		fmt.Fprintf(w, "  record: %s", stream.RecordStatusName(en.GetRecordStatus()))
		if en.GetRecordPath() != "" {
			fmt.Fprintf(w, " %s", en.GetRecordPath())
		}
		if en.GetFetchedAt() != nil {
			fmt.Fprintf(w, " fetched %s", en.GetFetchedAt().AsTime().UTC().Format(time.RFC3339Nano))
		}
		w.WriteByte('\n')
		if len(en.GetRecord()) > 0 {
			fmt.Fprintf(w, "%s\n", indentJSON(en.GetRecord()))
		}
	}
	w.WriteByte('\n')
}

// indentJSON pretty-prints JSON four spaces in; anything else is shown as is.
func indentJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "    ", "  ") != nil {
		return "    " + string(b)
	}
	return "    " + out.String()
}
