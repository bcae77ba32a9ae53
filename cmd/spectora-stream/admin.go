package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// adminConn connects an operator command to NATS: NATS_URL, or else the
// embedded server of a running `serve` at NATS_LISTEN.
func adminConn(ctx context.Context, nf natsFlags) (*natsx.Conn, jetstream.JetStream, error) {
	cfg := nf.config("spectora-stream-admin")
	if cfg.URL == "" {
		if nf.Listen == "" || nf.Listen == "off" {
			return nil, nil, errors.New("NATS_URL is unset and NATS_LISTEN is off: nothing to connect to")
		}
		cfg.URL = "nats://" + nf.Listen
	}
	conn, err := natsx.Open(ctx, cfg, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (is `spectora-stream serve` running, or NATS_URL set?)", err)
	}
	js, err := jetstream.New(conn.NC)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, js, nil
}

// openDeadLetters connects like adminConn and binds to SPECTORA_DLQ.
func openDeadLetters(ctx context.Context, nf natsFlags) (*natsx.Conn, *consumers.DeadLetters, error) {
	conn, js, err := adminConn(ctx, nf)
	if err != nil {
		return nil, nil, err
	}
	dlq, err := consumers.OpenDeadLetters(ctx, js)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, dlq, nil
}

type dlqCmd struct {
	List    dlqListCmd    `cmd:"" help:"List dead letters, oldest first."`
	Show    dlqShowCmd    `cmd:"" help:"Show one dead letter: headers, decoded event and raw body."`
	Redrive dlqRedriveCmd `cmd:"" help:"Send dead letters back to their group; each is deleted only after the republish is acknowledged."`
	Purge   dlqPurgeCmd   `cmd:"" help:"Delete dead letters of a group, or all with --all."`
}

type dlqListCmd struct {
	NATS  natsFlags `embed:""`
	Group string    `name:"group" short:"g" help:"Only this group's dead letters."`
	Limit int       `name:"limit" default:"100" help:"Show at most this many (0: all)."`
}

func (c *dlqListCmd) Run(ctx context.Context, _ *slog.Logger) error {
	conn, dlq, err := openDeadLetters(ctx, c.NATS)
	if err != nil {
		return err
	}
	defer conn.Close()
	dls, err := dlq.List(ctx, c.Group, c.Limit)
	if err != nil {
		return err
	}
	if len(dls) == 0 {
		fmt.Println("no dead letters")
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(w, "SEQ\tTIME\tGROUP\tSUBJECT\tORIGINAL\tDELIVERIES\tREASON\tERROR")
	for _, d := range dls {
		errText := d.Error
		if len(errText) > 80 {
			errText = errText[:77] + "..."
		}
		_, _ = fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s#%d\t%d\t%s\t%s\n", d.Sequence, d.Time.Format(time.RFC3339), d.Group,
			d.OriginalSubject, d.OriginalStream, d.OriginalSequence, d.Deliveries, d.Reason, errText)
	}
	return w.Flush()
}

type dlqShowCmd struct {
	NATS natsFlags `embed:""`
	Seq  uint64    `arg:"" help:"Dead letter sequence (from dlq list)."`
}

func (c *dlqShowCmd) Run(ctx context.Context, _ *slog.Logger) error {
	conn, dlq, err := openDeadLetters(ctx, c.NATS)
	if err != nil {
		return err
	}
	defer conn.Close()
	d, err := dlq.Get(ctx, c.Seq)
	if err != nil {
		return err
	}
	fmt.Printf("dead letter %d on %s\n\nheaders:\n", d.Sequence, d.Subject)
	for k, v := range d.Header {
		fmt.Printf("  %s: %s\n", k, strings.Join(v, ", "))
	}
	var msg proto.Message = &spectorav1.WebhookEvent{}
	if d.Header.Get(natsx.HeaderContentType) == natsx.ContentTypeEnrichedEvent {
		msg = &spectorav1.EnrichedEvent{}
	}
	if err := proto.Unmarshal(d.Data, msg); err != nil {
		fmt.Printf("\nbody (%d bytes, not decodable: %v)\n", len(d.Data), err)
		return nil
	}
	out, _ := protojson.MarshalOptions{Multiline: true}.Marshal(msg)
	fmt.Printf("\nevent:\n%s\n", out)
	var ev *spectorav1.WebhookEvent
	switch m := msg.(type) {
	case *spectorav1.WebhookEvent:
		ev = m
	case *spectorav1.EnrichedEvent:
		ev = m.GetEvent()
	}
	fmt.Printf("\nwebhook body:\n%s\n", ev.GetBody())
	return nil
}

type dlqRedriveCmd struct {
	NATS  natsFlags `embed:""`
	Seqs  []uint64  `arg:"" optional:"" help:"Dead letter sequences to redrive."`
	Group string    `name:"group" short:"g" help:"With --all: only this group's dead letters."`
	All   bool      `name:"all" help:"Redrive every dead letter (of --group, if given)."`
}

func (c *dlqRedriveCmd) Run(ctx context.Context, _ *slog.Logger) error {
	if len(c.Seqs) == 0 && !c.All {
		return errors.New("name dead letter sequences, or use --all [--group G]")
	}
	conn, dlq, err := openDeadLetters(ctx, c.NATS)
	if err != nil {
		return err
	}
	defer conn.Close()
	seqs := c.Seqs
	if c.All {
		dls, err := dlq.List(ctx, c.Group, 0)
		if err != nil {
			return err
		}
		for _, d := range dls {
			seqs = append(seqs, d.Sequence)
		}
	}
	failed := 0
	for _, seq := range seqs {
		ack, err := dlq.Redrive(ctx, seq)
		if err != nil {
			failed++
			fmt.Printf("dead letter %d: %v\n", seq, err)
			continue
		}
		fmt.Printf("dead letter %d redriven to %s as seq %d\n", seq, ack.Stream, ack.Sequence)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d dead letters not redriven", failed, len(seqs))
	}
	return nil
}

type dlqPurgeCmd struct {
	NATS  natsFlags `embed:""`
	Group string    `name:"group" short:"g" help:"Delete this group's dead letters."`
	All   bool      `name:"all" help:"Delete every dead letter of every group."`
}

func (c *dlqPurgeCmd) Run(ctx context.Context, _ *slog.Logger) error {
	if (c.Group == "") == !c.All {
		return errors.New("give exactly one of --group G or --all")
	}
	conn, dlq, err := openDeadLetters(ctx, c.NATS)
	if err != nil {
		return err
	}
	defer conn.Close()
	n, err := dlq.Purge(ctx, c.Group)
	if err != nil {
		return err
	}
	fmt.Printf("purged %d dead letters\n", n)
	return nil
}

type replayCmd struct {
	NATS    natsFlags     `embed:""`
	Group   string        `name:"group" short:"g" required:"" help:"Consumer group (durable) to rewind."`
	Since   time.Duration `name:"since" help:"Reprocess events stored in the last DURATION, e.g. 2h."`
	FromSeq uint64        `name:"from-seq" help:"Reprocess from this stream sequence."`
	Stream  string        `name:"stream" help:"Stream of the group; default: the one that has it (SPECTORA, then SPECTORA_ENRICHED)."`
}

func (c *replayCmd) Run(ctx context.Context, _ *slog.Logger) error {
	if (c.Since > 0) == (c.FromSeq > 0) {
		return errors.New("give exactly one of --since DURATION or --from-seq N")
	}
	conn, js, err := adminConn(ctx, c.NATS)
	if err != nil {
		return err
	}
	defer conn.Close()
	streams := []string{natsx.RawStream, natsx.EnrichedStream}
	if c.Stream != "" {
		streams = []string{c.Stream}
	}
	var lastErr error
	for _, stream := range streams {
		seq, err := consumers.Replay(ctx, js, stream, c.Group, time.Now().Add(-c.Since), c.FromSeq)
		if errors.Is(err, consumers.ErrNotFound) {
			lastErr = err
			continue
		}
		if err != nil {
			return err
		}
		if seq == 0 {
			fmt.Printf("nothing stored in %s in the last %s\n", stream, c.Since)
			return nil
		}
		fmt.Printf("group %s on %s now reprocesses from sequence %d\n", c.Group, stream, seq)
		return nil
	}
	return lastErr
}
