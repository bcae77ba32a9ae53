package natsx

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Health answers readiness questions about NATS: is the connection up, and do
// the streams this process needs exist.
type Health struct {
	conn    *Conn
	js      jetstream.JetStream
	streams []string
}

// NewHealth checks conn and the named streams.
func NewHealth(conn *Conn, js jetstream.JetStream, streams ...string) *Health {
	return &Health{conn: conn, js: js, streams: streams}
}

// Connected reports whether the NATS connection is currently up.
func (h *Health) Connected() bool { return h.conn.Connected() }

// Ready returns nil when NATS is connected and every stream exists.
func (h *Health) Ready(ctx context.Context) error {
	if !h.conn.Connected() {
		return fmt.Errorf("NATS not connected (status %s)", h.conn.NC.Status())
	}
	for _, name := range h.streams {
		if _, err := h.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %v", name, err)
		}
	}
	return nil
}
