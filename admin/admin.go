// Package admin is what an operator does to the streams: list, show, redrive
// and purge dead letters, and make a consumer group replay history. The
// operator commands and the console are built on it.
package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/stream"
)

var (
	// ErrNotFound means a dead letter, group or stream does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid means a request can't be carried out as given.
	ErrInvalid = errors.New("invalid request")
)

// DeadLetter is one message in the dead-letter stream.
type DeadLetter struct {
	stream.DeadLetter
	// Sequence is the dead letter's sequence in the dead-letter stream.
	Sequence uint64
	// Subject is spectora.dlq.<group>.<resource>.<action>.
	Subject string
	// Header and Data are the dead letter as stored: the original message's
	// headers and body plus the dead-letter headers.
	Header nats.Header
	Data   []byte
}

func deadLetterFrom(subject string, seq uint64, h nats.Header, data []byte) DeadLetter {
	meta, _ := stream.ParseDeadLetter(h) // shown even when incomplete
	return DeadLetter{DeadLetter: meta, Sequence: seq, Subject: subject, Header: h, Data: data}
}

// readerIdle is how long the server keeps the ordered consumers Admin reads
// with after their last use: they are one-off readers.
const readerIdle = 5 * time.Second

// Admin acts on the streams of one JetStream.
type Admin struct {
	js jetstream.JetStream
}

// New returns an Admin over js.
func New(js jetstream.JetStream) *Admin { return &Admin{js: js} }

func (a *Admin) dlq(ctx context.Context) (jetstream.Stream, error) {
	s, err := a.js.Stream(ctx, stream.DLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: stream %s (start the consumer groups once)", ErrNotFound, stream.DLQ)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	return s, nil
}

// DeadLetters returns up to limit dead letters of group ("" for all), oldest
// first; limit 0 returns all of them.
func (a *Admin) DeadLetters(ctx context.Context, group string, limit int) ([]DeadLetter, error) {
	s, err := a.dlq(ctx)
	if err != nil {
		return nil, err
	}
	filter := stream.DeadLetterFilter(group)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	var total uint64 // State.Msgs counts every dead letter; Subjects only the filter's
	for _, n := range info.State.Subjects {
		total += n
	}
	if total == 0 {
		return nil, nil
	}
	want := int(total)
	if limit > 0 {
		want = min(limit, want)
	}
	return readDeadLetters(ctx, s, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, InactiveThreshold: readerIdle}, want)
}

// DeadLettersOf returns up to limit dead letters of events first published
// on subject (any group), dead-lettered at or after since, oldest first;
// their bodies are left out. The event page reads them.
func (a *Admin) DeadLettersOf(ctx context.Context, subject string, since time.Time, limit int) ([]DeadLetter, error) {
	sub, err := stream.ParseSubject(subject)
	if err != nil || sub.Route.Resource == "" {
		return nil, fmt.Errorf("%w: %q is not an event subject", ErrInvalid, subject)
	}
	s, err := a.dlq(ctx)
	if err != nil {
		return nil, err
	}
	return readDeadLetters(ctx, s, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{sub.Route.DeadLetterSubject("*")}, DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime: &since, HeadersOnly: true, InactiveThreshold: readerIdle,
	}, limit)
}

// readDeadLetters reads up to want dead letters through an ordered consumer.
func readDeadLetters(ctx context.Context, s jetstream.Stream, cfg jetstream.OrderedConsumerConfig, want int) ([]DeadLetter, error) {
	var out []DeadLetter
	if want <= 0 {
		return nil, nil
	}
	err := natsx.ReadOrdered(ctx, s, cfg, min(want, 256), func(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
		out = append(out, deadLetterFrom(m.Subject(), md.Sequence.Stream, m.Headers(), m.Data()))
		return len(out) < want
	})
	return out, err
}

// DeadLetter returns the dead letter at seq.
func (a *Admin) DeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	s, err := a.dlq(ctx)
	if err != nil {
		return DeadLetter{}, err
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: dead letter %d", ErrNotFound, seq)
	}
	if err != nil {
		return DeadLetter{}, err
	}
	return deadLetterFrom(m.Subject, m.Sequence, m.Header, m.Data), nil
}

// Redrive republishes the dead letter at seq to its group's redrive subject
// in the original stream, so only that group processes it again, and deletes
// it from the dead-letter stream only after the republish is acknowledged.
// Running it twice for one dead letter publishes once (the message ID is
// derived from seq).
func (a *Admin) Redrive(ctx context.Context, seq uint64) (*jetstream.PubAck, error) {
	dl, err := a.DeadLetter(ctx, seq)
	if err != nil {
		return nil, err
	}
	if dl.Group == "" || (dl.OriginalStream != stream.Raw && dl.OriginalStream != stream.Enriched) {
		return nil, fmt.Errorf("%w: dead letter %d lacks its group or original stream (%s, %s headers)", ErrInvalid, seq, stream.HeaderDLQGroup, stream.HeaderOriginalStream)
	}
	msg := nats.NewMsg(stream.RedriveSubject(dl.OriginalStream, dl.Group, seq))
	msg.Data = dl.Data
	stream.CopyHeaders(msg.Header, dl.Header)
	stream.ClearDeadLetter(msg.Header)
	msg.Header.Set(stream.HeaderRedrivenFrom, fmt.Sprint(seq))
	ack, err := a.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(fmt.Sprintf("redrive.%d.%s", seq, dl.Time.Format(time.RFC3339Nano))),
		jetstream.WithExpectStream(dl.OriginalStream))
	if err != nil {
		return nil, fmt.Errorf("redrive %d to %s: %w (the dead letter is kept)", seq, msg.Subject, err)
	}
	s, err := a.dlq(ctx)
	if err != nil {
		return ack, err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return ack, fmt.Errorf("redriven %d, but deleting it from %s failed: %w", seq, stream.DLQ, err)
	}
	return ack, nil
}

// Purge deletes every dead letter of group ("" for all) and returns how many.
func (a *Admin) Purge(ctx context.Context, group string) (uint64, error) {
	s, err := a.dlq(ctx)
	if err != nil {
		return 0, err
	}
	filter := stream.DeadLetterFilter(group)
	before, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(filter)); err != nil {
		return 0, fmt.Errorf("purge %s: %w", filter, err)
	}
	after, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return before.State.Msgs - after.State.Msgs, nil
}

// Replay makes group reprocess its stream from a stream sequence (fromSeq > 0)
// or from a point in time (since). Running instances of the group pick the
// history up at once; nothing is republished. It returns the stream and the
// sequence the group restarts at, or sequence 0 when nothing was stored after
// since. With streamName "" the group is looked for in the raw stream, then
// the enriched one.
func (a *Admin) Replay(ctx context.Context, streamName, group string, since time.Time, fromSeq uint64) (string, uint64, error) {
	if (fromSeq == 0) == since.IsZero() {
		return "", 0, fmt.Errorf("%w: give a start time or a sequence, not both", ErrInvalid)
	}
	names := []string{stream.Raw, stream.Enriched}
	if streamName != "" {
		names = []string{streamName}
	}
	for _, name := range names {
		s, err := a.js.Stream(ctx, name)
		if err != nil {
			return "", 0, fmt.Errorf("stream %s: %w", name, err)
		}
		if _, err := s.Consumer(ctx, group); errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		} else if err != nil {
			return "", 0, err
		}
		seq := fromSeq
		if seq == 0 {
			if seq, err = firstSince(ctx, s, since); err != nil || seq == 0 {
				return name, 0, err
			}
		}
		if _, err := a.js.ResetConsumerToSequence(ctx, name, group, seq); err != nil {
			return "", 0, fmt.Errorf("reset %s/%s to %d: %w", name, group, seq, err)
		}
		return name, seq, nil
	}
	return "", 0, fmt.Errorf("%w: group %s has no consumer on %v (start it once first)", ErrNotFound, group, names)
}

// SequenceAt is the sequence of the first message streamName stored at or
// after t, or 0 when it stored none since.
func (a *Admin) SequenceAt(ctx context.Context, streamName string, t time.Time) (uint64, error) {
	s, err := a.js.Stream(ctx, streamName)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", streamName, err)
	}
	return firstSince(ctx, s, t)
}

// firstSince is the sequence of the first message stored at or after t, or 0.
func firstSince(ctx context.Context, s jetstream.Stream, t time.Time) (uint64, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 || info.State.LastTime.Before(t) {
		return 0, nil // nothing to wait for
	}
	oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t,
		InactiveThreshold: readerIdle, HeadersOnly: true})
	if err != nil {
		return 0, err
	}
	m, err := oc.Next(jetstream.FetchMaxWait(2 * time.Second))
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	md, err := m.Metadata()
	if err != nil {
		return 0, err
	}
	return md.Sequence.Stream, nil
}
