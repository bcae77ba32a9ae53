package natsx

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ReadOrdered reads s through an ordered consumer made from cfg, batch
// messages per request without waiting, and calls each for every message
// in order until it returns false or the stream has no more to give (its
// end, or the rest deleted meanwhile). For one-off readers such as the
// operator commands and the console: set cfg.InactiveThreshold so the
// server drops the consumer soon after.
func ReadOrdered(ctx context.Context, s jetstream.Stream, cfg jetstream.OrderedConsumerConfig, batch int,
	each func(m jetstream.Msg, md *jetstream.MsgMetadata) bool) error {
	oc, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	for {
		b, err := oc.FetchNoWait(batch)
		if err != nil {
			return err
		}
		n := 0
		for m := range b.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if !each(m, md) {
				return nil
			}
		}
		if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
