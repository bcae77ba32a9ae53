package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spectora-stream/spectora-stream/internal/natsx"
)

// DeadLetter is one message in SPECTORA_DLQ.
type DeadLetter struct {
	// Sequence is the dead letter's sequence in SPECTORA_DLQ.
	Sequence uint64
	// Subject is spectora.dlq.<group>.<resource>.<action>.
	Subject string
	Group   string
	// OriginalSubject, OriginalStream and OriginalSequence locate the message
	// the group gave up on.
	OriginalSubject  string
	OriginalStream   string
	OriginalSequence uint64
	Deliveries       uint64
	Reason           string
	Error            string
	Time             time.Time
	Header           nats.Header
	Data             []byte
}

func deadLetterFrom(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	d := DeadLetter{
		Sequence: m.Sequence, Subject: m.Subject, Header: h, Data: m.Data,
		Group: h.Get(natsx.HeaderDLQGroup), OriginalSubject: h.Get(natsx.HeaderOriginalSubject),
		OriginalStream: h.Get(natsx.HeaderOriginalStream), Reason: h.Get(natsx.HeaderDLQReason),
		Error: h.Get(natsx.HeaderDLQError),
	}
	d.OriginalSequence, _ = strconv.ParseUint(h.Get(natsx.HeaderOriginalSequence), 10, 64)
	d.Deliveries, _ = strconv.ParseUint(h.Get(natsx.HeaderDLQDeliveries), 10, 64)
	d.Time, _ = time.Parse(time.RFC3339Nano, h.Get(natsx.HeaderDLQTime))
	return d
}

// DeadLetters manages SPECTORA_DLQ: list, show, redrive and purge.
type DeadLetters struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// OpenDeadLetters binds to the existing SPECTORA_DLQ stream.
func OpenDeadLetters(ctx context.Context, js jetstream.JetStream) (*DeadLetters, error) {
	s, err := js.Stream(ctx, natsx.DLQStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", natsx.DLQStream, err)
	}
	return &DeadLetters{js: js, stream: s}, nil
}

// filter is the DLQ subject filter of one group, or of all groups.
func filter(group string) string {
	if group == "" {
		group = "*"
	}
	return natsx.DLQPrefix + "." + group + ".*.*"
}

// List returns up to limit dead letters of group ("" for all), oldest first.
func (d *DeadLetters) List(ctx context.Context, group string, limit int) ([]DeadLetter, error) {
	info, err := d.stream.Info(ctx, jetstream.WithSubjectFilter(filter(group)))
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", natsx.DLQStream, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cons, err := d.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter(group)}})
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	want := int(min(uint64(limit), info.State.Msgs))
	if limit <= 0 {
		want = int(info.State.Msgs)
	}
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 256), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return out, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, _ := m.Metadata()
			raw := &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data()}
			out = append(out, deadLetterFrom(raw))
		}
		if batch.Error() != nil {
			return out, batch.Error()
		}
		if n == 0 {
			break // the rest was removed meanwhile
		}
	}
	return out, nil
}

// Get returns the dead letter at seq.
func (d *DeadLetters) Get(ctx context.Context, seq uint64) (DeadLetter, error) {
	m, err := d.stream.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return DeadLetter{}, fmt.Errorf("%w: dead letter %d", ErrNotFound, seq)
		}
		return DeadLetter{}, err
	}
	return deadLetterFrom(m), nil
}

// Redrive republishes the dead letter at seq to its group's redrive subject
// in the original stream, so only that group processes it again, and deletes
// it from the DLQ only after the republish is acknowledged. Running it twice
// for one dead letter publishes once (the message ID is derived from seq).
func (d *DeadLetters) Redrive(ctx context.Context, seq uint64) (*jetstream.PubAck, error) {
	dl, err := d.Get(ctx, seq)
	if err != nil {
		return nil, err
	}
	if dl.Group == "" || dl.OriginalStream == "" {
		return nil, fmt.Errorf("dead letter %d lacks %s/%s headers", seq, natsx.HeaderDLQGroup, natsx.HeaderOriginalStream)
	}
	msg := nats.NewMsg(natsx.RedriveSubject(dl.OriginalStream, dl.Group))
	msg.Data = dl.Data
	for k, v := range dl.Header {
		switch k {
		case natsx.HeaderDLQGroup, natsx.HeaderDLQDeliveries, natsx.HeaderDLQReason, natsx.HeaderDLQError, natsx.HeaderDLQTime,
			natsx.HeaderOriginalStream, natsx.HeaderOriginalSequence:
			continue
		}
		if len(k) > 5 && k[:5] == "Nats-" {
			continue
		}
		msg.Header[k] = v
	}
	msg.Header.Set(natsx.HeaderOriginalSubject, dl.OriginalSubject)
	msg.Header.Set(natsx.HeaderRedrivenFrom, strconv.FormatUint(seq, 10))
	ack, err := d.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(fmt.Sprintf("redrive.%d.%s", seq, dl.Time.Format(time.RFC3339Nano))),
		jetstream.WithExpectStream(dl.OriginalStream))
	if err != nil {
		return nil, fmt.Errorf("redrive %d to %s: %w (the dead letter is kept)", seq, msg.Subject, err)
	}
	if err := d.stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return ack, fmt.Errorf("redriven %d, but deleting it from %s failed: %w", seq, natsx.DLQStream, err)
	}
	return ack, nil
}

// Purge deletes every dead letter of group ("" for all) and returns how many.
func (d *DeadLetters) Purge(ctx context.Context, group string) (uint64, error) {
	info, err := d.stream.Info(ctx, jetstream.WithSubjectFilter(filter(group)))
	if err != nil {
		return 0, err
	}
	n := info.State.Msgs
	if err := d.stream.Purge(ctx, jetstream.WithPurgeSubject(filter(group))); err != nil {
		return 0, fmt.Errorf("purge %s: %w", filter(group), err)
	}
	return n, nil
}

// Replay makes group reprocess its stream from a stream sequence (fromSeq > 0)
// or from a point in time (since). Running instances of the group pick the
// history up at once; nothing is republished. It returns the sequence the group
// restarts at, or 0 when there is nothing after since.
func Replay(ctx context.Context, js jetstream.JetStream, stream, group string, since time.Time, fromSeq uint64) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	if _, err := s.Consumer(ctx, group); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0, fmt.Errorf("%w: group %s has no consumer on %s (start it once first)", ErrNotFound, group, stream)
		}
		return 0, err
	}
	if fromSeq == 0 {
		oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
		if err != nil {
			return 0, err
		}
		m, err := oc.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				return 0, nil
			}
			return 0, err
		}
		md, err := m.Metadata()
		if err != nil {
			return 0, err
		}
		fromSeq = md.Sequence.Stream
	}
	if _, err := js.ResetConsumerToSequence(ctx, stream, group, fromSeq); err != nil {
		return 0, fmt.Errorf("reset %s/%s to %d: %w", stream, group, fromSeq, err)
	}
	return fromSeq, nil
}
