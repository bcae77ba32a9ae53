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
	// maxCandidates bounds the signatures of one version that are checked:
	// during a rotation Svix signs with the new secret and at most ten old
	// ones, so more than eleven can't be genuine.
	maxCandidates = 11
	// maxEntries bounds the entries of a signature header, of any version.
	maxEntries = 32
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
		// Svix IDs are printable ASCII; anything else could not be stored
		// as the NATS message ID or the envelope's (UTF-8) id.
		if c := h.ID[i]; c <= ' ' || c >= 0x7f {
			return SignedHeaders{}, fmt.Errorf("%w: message id is not printable ASCII", ErrMalformedHeaders)
		}
	}
	return h, nil
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

// Signed is one delivery attempt's signature headers, checked before its
// body is read: the timestamp is within Tolerance and the candidate
// signatures are few enough to be genuine and decode to the right size.
type Signed struct {
	Headers SignedHeaders
	// At is the signed time.
	At  time.Time
	v1  string   // the v1 entries worth checking, as a signature header
	v1a [][]byte // the v1a signatures worth checking, decoded
}

// Check does every check that needs no body, cheapest first, so a request
// that can't be genuine is refused before its body is read.
func (v *Verifier) Check(h SignedHeaders) (Signed, error) {
	ts, err := parseTimestamp(h.Timestamp)
	if err != nil {
		return Signed{}, err
	}
	now := v.now()
	if now.Sub(ts) > Tolerance {
		return Signed{}, ErrTimestampTooOld
	}
	if ts.Sub(now) > Tolerance {
		return Signed{}, ErrTimestampTooNew
	}
	s := Signed{Headers: h, At: ts}
	entries, versioned, v1n := 0, 0, 0
	var v1 strings.Builder
	for entry := range strings.FieldsSeq(h.Signature) {
		if entries++; entries > maxEntries {
			return Signed{}, fmt.Errorf("%w: more than %d signatures", ErrMalformedHeaders, maxEntries)
		}
		version, value, ok := strings.Cut(entry, ",")
		if !ok || version == "" || value == "" {
			continue
		}
		versioned++
		switch version {
		case "v1":
			// An HMAC-SHA256 is 32 bytes: 44 base64 characters.
			if len(v.hmac) == 0 || len(value) != 44 {
				continue
			}
			if v1n++; v1n > maxCandidates {
				return Signed{}, fmt.Errorf("%w: more than %d v1 signatures", ErrMalformedHeaders, maxCandidates)
			}
			if v1.Len() > 0 {
				v1.WriteByte(' ')
			}
			v1.WriteString(entry)
		case "v1a":
			if len(v.ed) == 0 {
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(value)
			if err != nil || len(raw) != ed25519.SignatureSize {
				continue
			}
			if len(s.v1a) == maxCandidates {
				return Signed{}, fmt.Errorf("%w: more than %d v1a signatures", ErrMalformedHeaders, maxCandidates)
			}
			s.v1a = append(s.v1a, raw)
		}
	}
	if versioned == 0 {
		return Signed{}, fmt.Errorf("%w: no version,signature entry", ErrMalformedHeaders)
	}
	if v1.Len() == 0 && len(s.v1a) == 0 {
		// Nothing a configured key could have signed: no need for the body.
		return Signed{}, ErrSignatureMismatch
	}
	s.v1 = v1.String()
	return s, nil
}

// VerifyBody checks the signatures over body: every v1 candidate against
// every whsec_ secret (one HMAC per secret, through the svix library), then,
// only if none matched, every v1a candidate against every whpk_ key.
func (v *Verifier) VerifyBody(s Signed, body []byte) error {
	if s.v1 != "" {
		// The library reads the svix-* headers itself. The timestamp was
		// checked by Check, with our clock, so its own check is skipped.
		hdr := http.Header{}
		hdr.Set("svix-id", s.Headers.ID)
		hdr.Set("svix-timestamp", s.Headers.Timestamp)
		hdr.Set("svix-signature", s.v1)
		for _, wh := range v.hmac {
			if wh.VerifyIgnoringTimestamp(body, hdr) == nil {
				return nil
			}
		}
	}
	if len(s.v1a) > 0 {
		msg := signedContent(s.Headers.ID, s.Headers.Timestamp, body)
		for _, sig := range s.v1a {
			for _, pub := range v.ed {
				if ed25519.Verify(pub, msg, sig) {
					return nil
				}
			}
		}
	}
	return ErrSignatureMismatch
}

// Verify checks one delivery attempt: Check, then VerifyBody. It returns the
// signed time.
func (v *Verifier) Verify(h SignedHeaders, body []byte) (time.Time, error) {
	s, err := v.Check(h)
	if err != nil {
		return s.At, err
	}
	return s.At, v.VerifyBody(s, body)
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
