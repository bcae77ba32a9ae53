package webhook

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

func TestSignerHeadersVerifyWithSvix(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdefghijklmn"))
	s, err := NewSigner("whpk_ignored, " + secret)
	if err != nil {
		t.Fatal(err)
	}
	body := Body("inspection.confirmed", "42", nil)
	hdr, err := s.Headers(NewMessageID(), time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	wh, _ := svix.NewWebhook(secret)
	if err := wh.Verify(body, hdr); err != nil {
		t.Fatalf("svix does not verify our headers: %v", err)
	}
	if _, err := NewSigner("whpk_only"); !errors.Is(err, ErrNoSigningSecret) {
		t.Fatalf("NewSigner without whsec_: %v", err)
	}
}

func TestBodyAndMessageID(t *testing.T) {
	if got := string(Body("agent.updated", "7", nil)); got != `{"id":7,"type":"agent.updated"}` {
		t.Fatalf("numeric body %s", got)
	}
	if got := string(Body("agent.updated", "a-7", map[string]any{"x": 1})); got != `{"id":"a-7","type":"agent.updated","x":1}` {
		t.Fatalf("string body %s", got)
	}
	a, b := NewMessageID(), NewMessageID()
	if a == b || !strings.HasPrefix(a, "msg_") || len(a) != 31 {
		t.Fatalf("ids %q %q", a, b)
	}
}
