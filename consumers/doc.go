// Package consumers is the consumer-group runtime: durable JetStream pull
// consumers over the spectora-stream streams, with one ack, retry and
// dead-letter policy, so a handler only returns an error.
//
// A group is a durable consumer: every instance of a group shares its work,
// and every group sees every event. Write a Handler, pick the events with
// Config.Subjects, and call Run:
//
//	g, err := consumers.NewGroup(consumers.Config{
//		Name:     "crm-sync",
//		Subjects: []string{"spectora.inspection.confirmed"},
//		Handler: func(ctx context.Context, m *consumers.Message) error {
//			return crm.Push(ctx, m.Event) // nil: ack; error: retry with backoff
//		},
//	}, js)
//	if err != nil { ... }
//	err = g.Run(ctx) // blocks; on cancel, drains in-flight messages
//
// The policy, in one place (Decide): success → Ack; an error → NakWithDelay
// by Config.Backoff, or later if it is a RetryAfterError; an error wrapping
// ErrPermanent, or a failure on delivery Config.MaxDeliver → the message is
// stored in the dead-letter stream (its PubAck awaited) and then terminated.
// Handlers running longer than a third of AckWait get InProgress heartbeats.
//
// Behaviour around a handler is a Middleware. Recovery always runs; tracing
// and metrics run when Config.TracerProvider and Config.Metrics are set;
// Timeout and your own go in Config.Middleware.
package consumers
