package gateway

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// Tolerance is how far a signed timestamp may be from the gateway's clock, both
// ways; it matches Svix's and the Standard Webhooks spec's five minutes.
const Tolerance = 5 * time.Minute

const (
	hmacPrefix      = "whsec_"
	publicKeyPrefix = "whpk_"
	signingKeyPref  = "whsk_"
	// minSecretBytes follows the Standard Webhooks spec: secrets of at least 24
	// bytes. Svix generates exactly 24.
	minSecretBytes = 24
	// maxIDLen bounds the message ID, which becomes the Nats-Msg-Id.
	maxIDLen = 256
)

// SignedHeaders are the three signature headers of one delivery attempt, from
// either the svix-* or the webhook-* family.
type SignedHeaders struct {
	ID        string
	Timestamp string
	Signature string
}

// ReadSignedHeaders takes the svix-* headers when all three are present and the
// webhook-* headers otherwise, like the svix library. get looks a header up
// case-insensitively.
func ReadSignedHeaders(get func(name string) string) (SignedHeaders, error) {
	h := SignedHeaders{ID: get("svix-id"), Timestamp: get("svix-timestamp"), Signature: get("svix-signature")}
	if h.ID == "" || h.Timestamp == "" || h.Signature == "" {
		h = SignedHeaders{ID: get("webhook-id"), Timestamp: get("webhook-timestamp"), Signature: get("webhook-signature")}
	}
	if h.ID == "" || h.Timestamp == "" || h.Signature == "" {
		return SignedHeaders{}, ErrMissingHeaders
	}
	if len(h.ID) > maxIDLen {
		return SignedHeaders{}, fmt.Errorf("%w: message id longer than %d bytes", ErrMalformedHeaders, maxIDLen)
	}
	for i := 0; i < len(h.ID); i++ {
		if c := h.ID[i]; c <= ' ' || c == 0x7f {
			return SignedHeaders{}, fmt.Errorf("%w: message id has spaces or control characters", ErrMalformedHeaders)
		}
	}
	return h, nil
}

// signature is one "version,base64" entry of a signature header.
type signature struct {
	version string
	value   string
}

// parseSignatures splits a signature header into its space-separated entries.
// Entries without a comma are skipped; if none is left the header is malformed.
func parseSignatures(header string) ([]signature, error) {
	var out []signature
	for _, entry := range strings.Fields(header) {
		version, value, ok := strings.Cut(entry, ",")
		if !ok || version == "" || value == "" {
			continue
		}
		out = append(out, signature{version: version, value: value})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no version,signature entry", ErrMalformedHeaders)
	}
	return out, nil
}

// parseTimestamp reads a Unix-seconds timestamp header.
func parseTimestamp(s string) (time.Time, error) {
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, fmt.Errorf("%w: timestamp is not Unix seconds", ErrMalformedHeaders)
	}
	return time.Unix(sec, 0), nil
}

// Verifier checks Svix signatures against one source's secrets: every v1
// (HMAC-SHA256) signature against every whsec_ secret through the svix library,
// and every v1a (Ed25519) signature against every whpk_ public key.
type Verifier struct {
	hmac []*svix.Webhook
	ed   []ed25519.PublicKey
	now  func() time.Time
}

// NewVerifier builds a verifier from secrets (at least one). setting names the
// configuration setting in error messages; secrets themselves are never printed.
func NewVerifier(setting string, secrets []string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: %s is empty; refusing to start, an empty secret would accept forged webhooks", ErrNoSecret, setting)
	}
	v := &Verifier{now: time.Now}
	for i, s := range secrets {
		n := i + 1
		switch {
		case strings.HasPrefix(s, hmacPrefix):
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, hmacPrefix))
			if err != nil {
				return nil, fmt.Errorf("%w: %s entry %d (whsec_…): not valid base64", ErrBadSecret, setting, n)
			}
			if len(key) < minSecretBytes {
				return nil, fmt.Errorf("%w: %s entry %d (whsec_…): key is %d bytes, want at least %d", ErrBadSecret, setting, n, len(key), minSecretBytes)
			}
			wh, err := svix.NewWebhookRaw(key)
			if err != nil {
				return nil, fmt.Errorf("%w: %s entry %d (whsec_…): %v", ErrBadSecret, setting, n, err)
			}
			v.hmac = append(v.hmac, wh)
		case strings.HasPrefix(s, publicKeyPrefix):
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, publicKeyPrefix))
			if err != nil {
				return nil, fmt.Errorf("%w: %s entry %d (whpk_…): not valid base64", ErrBadSecret, setting, n)
			}
			if len(key) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("%w: %s entry %d (whpk_…): key is %d bytes, an Ed25519 public key is %d", ErrBadSecret, setting, n, len(key), ed25519.PublicKeySize)
			}
			v.ed = append(v.ed, ed25519.PublicKey(key))
		case strings.HasPrefix(s, signingKeyPref):
			return nil, fmt.Errorf("%w: %s entry %d is a whsk_ signing key; configure the matching whpk_ public key instead (and keep the signing key private)", ErrBadSecret, setting, n)
		default:
			return nil, fmt.Errorf("%w: %s entry %d: want a whsec_ secret or a whpk_ public key", ErrBadSecret, setting, n)
		}
	}
	return v, nil
}

// Verify checks one delivery attempt: the timestamp within Tolerance of now and
// at least one signature matching a configured key. It returns the signed time.
func (v *Verifier) Verify(h SignedHeaders, body []byte) (time.Time, error) {
	ts, err := parseTimestamp(h.Timestamp)
	if err != nil {
		return time.Time{}, err
	}
	now := v.now()
	if now.Sub(ts) > Tolerance {
		return ts, ErrTimestampTooOld
	}
	if ts.Sub(now) > Tolerance {
		return ts, ErrTimestampTooNew
	}
	sigs, err := parseSignatures(h.Signature)
	if err != nil {
		return ts, err
	}
	var hasV1, hasV1a bool
	for _, s := range sigs {
		hasV1 = hasV1 || s.version == "v1"
		hasV1a = hasV1a || s.version == "v1a"
	}
	if hasV1 && len(v.hmac) > 0 {
		// The library reads the svix-* headers itself and tries every v1 entry.
		// We checked the timestamp above (with our clock), so skip its check.
		hdr := http.Header{}
		hdr.Set("svix-id", h.ID)
		hdr.Set("svix-timestamp", h.Timestamp)
		hdr.Set("svix-signature", h.Signature)
		for _, wh := range v.hmac {
			if wh.VerifyIgnoringTimestamp(body, hdr) == nil {
				return ts, nil
			}
		}
	}
	if hasV1a && len(v.ed) > 0 {
		msg := signedContent(h.ID, h.Timestamp, body)
		for _, s := range sigs {
			if s.version != "v1a" {
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(s.value)
			if err != nil || len(raw) != ed25519.SignatureSize {
				continue
			}
			for _, pub := range v.ed {
				if ed25519.Verify(pub, msg, raw) {
					return ts, nil
				}
			}
		}
	}
	return ts, ErrSignatureMismatch
}

// signedContent is what Svix signs: "<id>.<timestamp>.<body>".
func signedContent(id, timestamp string, body []byte) []byte {
	msg := make([]byte, 0, len(id)+len(timestamp)+2+len(body))
	msg = append(msg, id...)
	msg = append(msg, '.')
	msg = append(msg, timestamp...)
	msg = append(msg, '.')
	return append(msg, body...)
}

// SplitSecrets splits a SPECTORA_WEBHOOK_SECRET value into its entries,
// separated by spaces or commas (several during a secret rotation).
func SplitSecrets(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}
