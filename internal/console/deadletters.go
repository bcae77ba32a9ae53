package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/spectora-stream/spectora-stream/admin"
	"github.com/spectora-stream/spectora-stream/stream"
)

// maxDeadLetters bounds the dead letters one page lists (and one "redrive
// all" sends); the count above the list says how many there are.
const maxDeadLetters = 500

type deadLetterRow struct {
	Seq             uint64
	Time            time.Time
	Group, Reason   string
	Error           string
	OriginalSubject string
	OriginalStream  string
	OriginalSeq     uint64
	Deliveries      uint64
}

func deadLetterRowFrom(d admin.DeadLetter) deadLetterRow {
	return deadLetterRow{Seq: d.Sequence, Time: d.Time.UTC(), Group: d.Group, Reason: d.Reason, Error: d.Error,
		OriginalSubject: d.OriginalSubject, OriginalStream: d.OriginalStream, OriginalSeq: d.OriginalSequence, Deliveries: d.Deliveries}
}

type deadLettersData struct {
	Group   string
	Groups  []string
	Rows    []deadLetterRow
	Total   int
	Actions []Action
	Flash   string
}

func (c *Console) deadLetters(w http.ResponseWriter, r *request) error {
	group := r.URL.Query().Get("group")
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := deadLettersData{Group: group, Actions: c.Actions(), Flash: r.URL.Query().Get("done")}
	// Counts per group from the stream's subject index; bodies only for
	// the page's rows.
	counts, err := c.deadLetterCounts(ctx)
	if err != nil {
		return err
	}
	for g, n := range counts {
		d.Groups = append(d.Groups, g)
		if group == "" || g == group {
			d.Total += int(n)
		}
	}
	slices.Sort(d.Groups)
	if d.Total > 0 {
		dls, err := c.admin.DeadLetters(ctx, group, maxDeadLetters)
		if err != nil {
			return err
		}
		for _, dl := range dls {
			d.Rows = append(d.Rows, deadLetterRowFrom(dl))
		}
	}
	c.render(w, r, http.StatusOK, "deadletters", d)
	return nil
}

// deadLetterCounts is the number of dead letters per group.
func (c *Console) deadLetterCounts(ctx context.Context) (map[string]uint64, error) {
	counts := map[string]uint64{}
	s, err := c.js.Stream(ctx, stream.DLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return counts, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(stream.DeadLetterFilter("")))
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	for subj, n := range info.State.Subjects {
		if sub, err := stream.ParseSubject(subj); err == nil {
			counts[sub.Group] += n
		}
	}
	return counts, nil
}

type deadLetterData struct {
	Row         deadLetterRow
	Subject     string
	Headers     [][2]string
	Envelope    string
	Body        string
	DecodeError string
}

func (c *Console) deadLetter(w http.ResponseWriter, r *request) error {
	seq, err := pathSeq(r, "dead letter", stream.DLQ)
	if err != nil {
		return err
	}
	dl, err := c.admin.DeadLetter(r.Context(), seq)
	if err != nil {
		return err
	}
	d := deadLetterData{Row: deadLetterRowFrom(dl), Subject: dl.Subject, Headers: sortedHeaders(dl.Header)}
	if ev, err := stream.Decode(dl.Header, dl.Data); err != nil {
		d.DecodeError = err.Error()
	} else {
		var msg []byte
		if ev.Enriched != nil {
			msg, _ = protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(ev.Enriched)
		} else {
			msg, _ = protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(ev.Webhook)
		}
		d.Envelope, d.Body = string(msg), indent(ev.Webhook.GetBody())
	}
	c.render(w, r, http.StatusOK, "deadletter", d)
	return nil
}

// redrive sends back the checked dead letters (seq, repeated), or every
// dead letter of a group (all=1 with group, confirmed).
func (c *Console) redrive(w http.ResponseWriter, r *request) error {
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	var seqs []uint64
	group := r.PostFormValue("group")
	what := ""
	if r.PostFormValue("all") == "1" {
		if group == "" {
			return fmt.Errorf("%w: redrive all: name the group", errBadRequest)
		}
		if r.PostFormValue("confirm") != group {
			return fmt.Errorf("%w: redrive all of %s: type the group's name to confirm", errBadRequest, group)
		}
		return c.redriveAll(ctx, w, r, group)
	}
	for _, v := range r.PostForm["seq"] {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil || seq == 0 {
			return fmt.Errorf("%w: seq %q: want a dead-letter sequence", errBadRequest, v)
		}
		seqs = append(seqs, seq)
	}
	switch {
	case len(seqs) == 0:
		return fmt.Errorf("%w: no dead letter selected", errBadRequest)
	case len(seqs) > maxDeadLetters:
		return fmt.Errorf("%w: %d dead letters selected: at most %d at once (or redrive all of a group)", errBadRequest, len(seqs), maxDeadLetters)
	}
	what = "redrive dead letter " + joinSeqs(seqs)
	var done []string
	var failed []string
	var firstErr error
	for _, seq := range seqs {
		ack, err := c.admin.Redrive(ctx, seq)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%d (%v)", seq, err))
			firstErr = cmpErr(firstErr, err)
			continue
		}
		done = append(done, fmt.Sprintf("%d → %s #%d", seq, ack.Stream, ack.Sequence))
	}
	result := fmt.Sprintf("redriven %d", len(done))
	if len(done) > 0 {
		result += ": " + strings.Join(done, ", ")
	}
	if len(failed) > 0 {
		result += "; failed " + strings.Join(failed, ", ")
	}
	c.record(r.user, what, result)
	if len(done) == 0 && firstErr != nil {
		return firstErr // e.g. 404 for a dead letter that doesn't exist
	}
	http.Redirect(w, r.Request, "/dead-letters?"+url.Values{"group": {group}, "done": {result}}.Encode(), http.StatusSeeOther)
	return nil
}

// redriveAll redrives every dead letter group had when asked, a page at a
// time; those that fail again and come back (with later sequences) are not
// redriven twice.
func (c *Console) redriveAll(ctx context.Context, w http.ResponseWriter, r *request, group string) error {
	s, err := c.js.Stream(ctx, stream.DLQ)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	upTo := info.State.LastSeq
	tried := map[uint64]bool{}
	var done, failed int
	for {
		dls, err := c.admin.DeadLetters(ctx, group, maxDeadLetters)
		if err != nil {
			return err
		}
		progressed := false
		for _, dl := range dls {
			if dl.Sequence > upTo || tried[dl.Sequence] {
				continue
			}
			tried[dl.Sequence], progressed = true, true
			if _, err := c.admin.Redrive(ctx, dl.Sequence); err != nil {
				c.log.Warn("console: redrive failed; the dead letter is kept", "seq", dl.Sequence, "err", err)
				failed++
				continue
			}
			done++
		}
		if !progressed {
			break
		}
	}
	result := fmt.Sprintf("redriven %d", done)
	if failed > 0 {
		result += fmt.Sprintf("; %d failed and were kept (see the log)", failed)
	}
	c.record(r.user, "redrive all dead letters of "+group, result)
	http.Redirect(w, r.Request, "/dead-letters?"+url.Values{"group": {group}, "done": {result}}.Encode(), http.StatusSeeOther)
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func joinSeqs(seqs []uint64) string {
	s := make([]string, len(seqs))
	for i, q := range seqs {
		s[i] = strconv.FormatUint(q, 10)
	}
	return strings.Join(s, ", ")
}

// purge deletes a group's dead letters, or every group's (group "*"), when
// the form repeats the group's name (or "all") in confirm.
func (c *Console) purge(w http.ResponseWriter, r *request) error {
	group := r.PostFormValue("group")
	want := group
	switch group {
	case "":
		return fmt.Errorf("%w: purge: name the group, or * for all", errBadRequest)
	case "*":
		group, want = "", "all"
	}
	if r.PostFormValue("confirm") != want {
		return fmt.Errorf("%w: purge %s: type %q to confirm", errBadRequest, want, want)
	}
	n, err := c.admin.Purge(r.Context(), group)
	result := fmt.Sprintf("purged %d", n)
	if err != nil {
		result = "failed: " + err.Error()
	}
	c.record(r.user, "purge dead letters of "+want, result)
	if err != nil {
		return err
	}
	http.Redirect(w, r.Request, "/dead-letters?"+url.Values{"done": {result}}.Encode(), http.StatusSeeOther)
	return nil
}
