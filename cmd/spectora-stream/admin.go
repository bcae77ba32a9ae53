package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/admin"
	"github.com/spectora-stream/spectora-stream/internal/embedded"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/stream"
)

// clientFlags say how an operator command reaches NATS: NATS_URL, or else the
// embedded server of a running `serve` on this machine, as its admin user.
type clientFlags struct {
	URL      string `name:"nats-url" env:"NATS_URL" placeholder:"URLS" help:"NATS server or cluster URLs, comma-separated. Unset: the embedded server of a running serve, at NATS_LISTEN (${env})."`
	natsAuth `embed:""`
	Listen   string `name:"nats-listen" env:"NATS_LISTEN" default:"127.0.0.1:4222" help:"With NATS_URL unset: where a running serve's embedded server listens (${env})."`
	StoreDir string `name:"nats-store-dir" env:"NATS_STORE_DIR" default:"./data/nats" help:"With NATS_URL unset: that server's store, whose users/admin.nk this command connects with (${env})."`
}

// openStream connects, as connect does, and looks up the stream name; the
// connection is closed again when the stream can't be had.
func (f clientFlags) openStream(ctx context.Context, name string) (*natsx.Conn, jetstream.Stream, error) {
	conn, js, err := f.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return conn, s, nil
}

// connect opens a client connection for an operator command.
func (f clientFlags) connect(ctx context.Context) (*natsx.Conn, jetstream.JetStream, error) {
	cfg := f.config(f.URL, "spectora-stream-admin")
	via := "NATS_URL " + f.URL
	if cfg.URL == "" {
		if f.Listen == "" || f.Listen == "off" {
			return nil, nil, usageError{errors.New("NATS_URL is unset and NATS_LISTEN is off: nothing to connect to")}
		}
		cfg.URL = "nats://" + f.Listen
		via = "NATS_LISTEN " + f.Listen + " (NATS_URL is unset)"
		if seed := embedded.SeedFile(f.StoreDir, embedded.AdminUser); cfg.NkeyFile == "" && fileExists(seed) {
			cfg.NkeyFile = seed
		}
	}
	conn, err := natsx.Open(ctx, cfg, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w; is `spectora-stream serve` running, or NATS_URL set?", via, errors.Unwrap(err))
	}
	js, err := jetstream.New(conn.NC)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, js, nil
}

// withAdmin runs f with an Admin over a fresh connection.
func (f clientFlags) withAdmin(ctx context.Context, fn func(*admin.Admin) error) error {
	conn, js, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(admin.New(js))
}

type dlqCmd struct {
	List    dlqListCmd    `cmd:"" help:"List dead letters, oldest first."`
	Show    dlqShowCmd    `cmd:"" help:"Show one dead letter: headers, decoded event and raw body."`
	Redrive dlqRedriveCmd `cmd:"" help:"Send dead letters back to their group; each is deleted only after the republish is acknowledged."`
	Purge   dlqPurgeCmd   `cmd:"" help:"Delete dead letters of a group, or all with --all."`
}

type dlqListCmd struct {
	NATS  clientFlags `embed:""`
	Group string      `name:"group" short:"g" help:"Only this group's dead letters."`
	Limit int         `name:"limit" default:"100" help:"Show at most this many; 0 shows all."`
}

func (c *dlqListCmd) Run(ctx context.Context) error {
	return c.NATS.withAdmin(ctx, func(a *admin.Admin) error {
		dls, err := a.DeadLetters(ctx, c.Group, c.Limit)
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
	})
}

type dlqShowCmd struct {
	NATS clientFlags `embed:""`
	JSON bool        `name:"json" help:"One JSON object (headers, envelope, body) instead of text."`
	Seq  uint64      `arg:"" help:"Dead letter sequence (from dlq list)."`
}

// Run prints why the message was dead-lettered, then the dead letter decoded
// as events get prints any stored event.
func (c *dlqShowCmd) Run(ctx context.Context) error {
	return c.NATS.withAdmin(ctx, func(a *admin.Admin) error {
		d, err := a.DeadLetter(ctx, c.Seq)
		if err != nil {
			return err
		}
		if !c.JSON {
			fmt.Printf("dead letter %d: group %s gave up after %d deliveries (%s): %s\n  original: %s #%d  %s\n\n",
				d.Sequence, d.Group, d.Deliveries, d.Reason, d.Error, d.OriginalStream, d.OriginalSequence, d.OriginalSubject)
		}
		return eventsFormat{Stream: stream.DLQ, JSON: c.JSON}.print(os.Stdout, d.Sequence, d.Subject, d.Time, d.Header, d.Data)
	})
}

type dlqRedriveCmd struct {
	NATS  clientFlags `embed:""`
	Seqs  []uint64    `arg:"" optional:"" help:"Dead letter sequences to redrive."`
	Group string      `name:"group" short:"g" help:"With --all: only this group's dead letters."`
	All   bool        `name:"all" help:"Redrive every dead letter (of --group, if given)."`
}

func (c *dlqRedriveCmd) Run(ctx context.Context) error {
	if len(c.Seqs) == 0 && !c.All {
		return usageError{errors.New("name dead letter sequences, or use --all [--group G]")}
	}
	return c.NATS.withAdmin(ctx, func(a *admin.Admin) error {
		seqs := c.Seqs
		if c.All {
			dls, err := a.DeadLetters(ctx, c.Group, 0)
			if err != nil {
				return err
			}
			for _, d := range dls {
				seqs = append(seqs, d.Sequence)
			}
		}
		failed := 0
		for _, seq := range seqs {
			ack, err := a.Redrive(ctx, seq)
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
	})
}

type dlqPurgeCmd struct {
	NATS  clientFlags `embed:""`
	Group string      `name:"group" short:"g" help:"Delete this group's dead letters."`
	All   bool        `name:"all" help:"Delete every dead letter of every group."`
}

func (c *dlqPurgeCmd) Run(ctx context.Context) error {
	if (c.Group == "") == !c.All {
		return usageError{errors.New("give exactly one of --group G or --all")}
	}
	return c.NATS.withAdmin(ctx, func(a *admin.Admin) error {
		n, err := a.Purge(ctx, c.Group)
		if err != nil {
			return err
		}
		fmt.Printf("purged %d dead letters\n", n)
		return nil
	})
}

type replayCmd struct {
	NATS    clientFlags   `embed:""`
	Group   string        `name:"group" short:"g" required:"" help:"Consumer group (durable) to rewind."`
	Since   time.Duration `name:"since" help:"Reprocess events stored in the last DURATION, e.g. 2h."`
	FromSeq uint64        `name:"from-seq" help:"Reprocess from this stream sequence."`
	Stream  string        `name:"stream" enum:",SPECTORA,SPECTORA_ENRICHED" default:"" help:"Stream of the group: SPECTORA or SPECTORA_ENRICHED; default the one that has it."`
}

func (c *replayCmd) Run(ctx context.Context, _ *slog.Logger) error {
	if (c.Since > 0) == (c.FromSeq > 0) {
		return usageError{errors.New("give exactly one of --since DURATION or --from-seq N")}
	}
	var since time.Time
	if c.Since > 0 {
		since = time.Now().Add(-c.Since)
	}
	return c.NATS.withAdmin(ctx, func(a *admin.Admin) error {
		name, seq, err := a.Replay(ctx, c.Stream, c.Group, since, c.FromSeq)
		if err != nil {
			return err
		}
		if seq == 0 {
			fmt.Printf("nothing stored in %s in the last %s\n", name, c.Since)
			return nil
		}
		fmt.Printf("group %s on %s now reprocesses from sequence %d\n", c.Group, name, seq)
		return nil
	})
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
