package gateway

import "errors"

// Configuration errors, returned by New and the parsing helpers. Their messages
// name the setting but never print a secret.
var (
	// ErrNoSecret means SPECTORA_WEBHOOK_SECRET (or a source's secrets) is empty.
	// The pinned svix library would accept an empty key, which anyone can forge.
	ErrNoSecret = errors.New("no webhook secret configured")
	// ErrBadSecret means a configured secret or public key is malformed.
	ErrBadSecret = errors.New("malformed webhook secret")
	// ErrBadConfig means another gateway setting is invalid.
	ErrBadConfig = errors.New("invalid gateway configuration")
)

// Verification errors: each is answered with 401 and a stable error code.
var (
	// ErrMissingHeaders means the id, timestamp or signature header is absent.
	ErrMissingHeaders = errors.New("missing signature headers")
	// ErrMalformedHeaders means a signature header could not be parsed.
	ErrMalformedHeaders = errors.New("malformed signature headers")
	// ErrTimestampTooOld means the signed timestamp is more than the tolerance in the past.
	ErrTimestampTooOld = errors.New("signature timestamp too old")
	// ErrTimestampTooNew means the signed timestamp is more than the tolerance in the future.
	ErrTimestampTooNew = errors.New("signature timestamp too far in the future")
	// ErrSignatureMismatch means no signature matched any configured secret.
	ErrSignatureMismatch = errors.New("no signature matches a configured secret")
)

// Request errors.
var (
	// ErrUnknownSource means the URL names a source that is not configured (404).
	ErrUnknownSource = errors.New("unknown webhook source")
	// ErrRateLimited means the gateway's rate limit was hit (429).
	ErrRateLimited = errors.New("rate limit exceeded")
	// ErrUnavailable means JetStream could not store the event (503); Svix retries.
	ErrUnavailable = errors.New("jetstream unavailable")
	// ErrPublishTimeout means JetStream did not acknowledge in time (503); Svix
	// retries and the duplicate window drops the copy if the first one was stored.
	ErrPublishTimeout = errors.New("jetstream did not acknowledge in time")
)
