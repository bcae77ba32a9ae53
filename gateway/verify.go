package gateway

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
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
// (HMAC-SHA256) signature against every whsec_ secret, and every v1a
// (Ed25519) signature against every whpk_ public key.
//
// The v1 check is the svix library's algorithm (Webhook.Verify in
// github.com/svix/svix-webhooks/go), entry parsing included, with the
// HMAC state of each secret pooled: hmac.New per webhook costs allocations
// and two extra SHA-256 blocks, and Reset costs neither. A differential fuzz
// test holds it to the library's answers.
type Verifier struct {
	hmac []*hmacKey
	ed   []ed25519.PublicKey
	now  func() time.Time
}

// hmacKey is one whsec_ secret's pool of HMAC-SHA256 states.
type hmacKey struct{ pool sync.Pool }

// macState is one HMAC computation's state and scratch space, reused whole.
type macState struct {
	h      hash.Hash
	prefix []byte
	sum    [sha256.Size]byte
}

func newHMACKey(key []byte) *hmacKey {
	k := &hmacKey{}
	k.pool.New = func() any {
		return &macState{h: hmac.New(sha256.New, key), prefix: make([]byte, 0, maxIDLen+32)}
	}
	return k
}

// matches reports whether any candidate is the HMAC of "<id>.<unix>.<body>",
// compared in constant time.
func (k *hmacKey) matches(id string, unix int64, body []byte, candidates [][sha256.Size]byte) bool {
	st := k.pool.Get().(*macState)
	defer k.pool.Put(st)
	st.h.Reset()
	st.prefix = append(st.prefix[:0], id...)
	st.prefix = append(st.prefix, '.')
	st.prefix = strconv.AppendInt(st.prefix, unix, 10)
	st.prefix = append(st.prefix, '.')
	st.h.Write(st.prefix)
	st.h.Write(body)
	sum := st.h.Sum(st.sum[:0])
	ok := false
	for i := range candidates {
		if hmac.Equal(sum, candidates[i][:]) {
			ok = true // no early return: the time doesn't depend on which one
		}
	}
	return ok
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
			v.hmac = append(v.hmac, newHMACKey(key))
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
	v1  [maxCandidates][sha256.Size]byte // the v1 signatures worth checking, decoded
	v1n int
	v1a [][]byte // the v1a signatures worth checking, decoded
}

// Check does every check that needs no body, cheapest first, so a request
// that can't be genuine is refused before its body is read.
//
// Entries are read as the svix library reads them: separated by single
// spaces, "version,signature[,ignored]". A v1 signature is worth checking
// when it is the canonical base64 of 32 bytes, which is exactly when the
// library's string comparison could match.
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
	entries, versioned := 0, 0
	for entry := range strings.SplitSeq(h.Signature, " ") {
		if entry == "" {
			continue
		}
		if entries++; entries > maxEntries {
			return Signed{}, fmt.Errorf("%w: more than %d signatures", ErrMalformedHeaders, maxEntries)
		}
		version, rest, ok := strings.Cut(entry, ",")
		if !ok {
			continue
		}
		value, _, _ := strings.Cut(rest, ",")
		if version == "" || value == "" {
			continue
		}
		versioned++
		switch version {
		case "v1":
			// An HMAC-SHA256 is 32 bytes: 44 base64 characters.
			if len(v.hmac) == 0 || len(value) != 44 {
				continue
			}
			if s.v1n == maxCandidates {
				return Signed{}, fmt.Errorf("%w: more than %d v1 signatures", ErrMalformedHeaders, maxCandidates)
			}
			var enc [44]byte
			var raw [33]byte // DecodedLen(44) is 33; 32 are used
			copy(enc[:], value)
			if n, err := base64.StdEncoding.Strict().Decode(raw[:], enc[:]); err != nil || n != sha256.Size {
				continue
			}
			copy(s.v1[s.v1n][:], raw[:sha256.Size])
			s.v1n++
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
	if s.v1n == 0 && len(s.v1a) == 0 {
		// Nothing a configured key could have signed: no need for the body.
		return Signed{}, ErrSignatureMismatch
	}
	return s, nil
}

// VerifyBody checks the signatures over body: every v1 candidate against
// every whsec_ secret (one HMAC per secret), then, only if none matched,
// every v1a candidate against every whpk_ key. Like the svix library, v1
// signs the timestamp as the decimal Unix seconds it parsed, not the
// header's bytes.
func (v *Verifier) VerifyBody(s *Signed, body []byte) error {
	if s.v1n > 0 {
		for _, k := range v.hmac {
			if k.matches(s.Headers.ID, s.At.Unix(), body, s.v1[:s.v1n]) {
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
	return s.At, v.VerifyBody(&s, body)
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
