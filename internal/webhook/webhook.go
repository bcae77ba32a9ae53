// Package webhook builds Svix-signed Spectora webhooks, the way Svix delivers
// them: used by the send and bench commands, by the simulator and by tests, so
// everything that talks to the gateway signs through the svix library.
package webhook

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// EventTypes are the eleven event types Spectora's webhooks offer.
var EventTypes = []string{
	"inspection.created",
	"inspection.confirmed",
	"inspection.canceled",
	"inspection.deleted",
	"inspection.published",
	"agent.created",
	"agent.updated",
	"agent.deleted",
	"client.created",
	"client.updated",
	"client.deleted",
}

// ErrNoSigningSecret means no whsec_ secret was given to sign with.
var ErrNoSigningSecret = errors.New("no whsec_ secret to sign with")

// Signer signs webhook deliveries with one whsec_ secret through the svix library.
type Signer struct {
	wh *svix.Webhook
}

// NewSigner takes the first whsec_ entry of secrets (a SPECTORA_WEBHOOK_SECRET
// value: entries separated by spaces or commas).
func NewSigner(secrets string) (*Signer, error) {
	for _, s := range strings.FieldsFunc(secrets, func(r rune) bool { return r == ',' || r == ' ' }) {
		if !strings.HasPrefix(s, "whsec_") {
			continue
		}
		wh, err := svix.NewWebhook(s)
		if err != nil {
			return nil, fmt.Errorf("whsec_ secret is not valid base64: %w", err)
		}
		return &Signer{wh: wh}, nil
	}
	return nil, ErrNoSigningSecret
}

// Headers returns the svix-id, svix-timestamp and svix-signature headers for
// one delivery attempt of body signed at t.
func (s *Signer) Headers(msgID string, t time.Time, body []byte) (http.Header, error) {
	sig, err := s.wh.Sign(msgID, t, body)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	h := http.Header{}
	h.Set("svix-id", msgID)
	h.Set("svix-timestamp", strconv.FormatInt(t.Unix(), 10))
	h.Set("svix-signature", sig)
	h.Set("Content-Type", "application/json")
	return h, nil
}

// NewMessageID returns a fresh Svix-style message ID ("msg_" and 27 random
// base62 characters).
func NewMessageID() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 27)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "msg_" + string(b)
}

// Body builds a thin Spectora-style payload: the event type and the record ID
// (a JSON number when recordID is numeric), plus optional extra fields.
func Body(eventType, recordID string, extra map[string]any) []byte {
	doc := map[string]any{"type": eventType}
	for k, v := range extra {
		doc[k] = v
	}
	if n, err := strconv.ParseInt(recordID, 10, 64); err == nil {
		doc["id"] = n
	} else if recordID != "" {
		doc["id"] = recordID
	}
	b, _ := json.Marshal(doc) // a map of strings and numbers always encodes
	return b
}
