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
	// ErrMalformedHeaders means a signature header could not be parsed, or
	// holds more signatures than a genuine delivery can.
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
	// ErrBadFraming means the request's length is ambiguous (both
	// Content-Length and Transfer-Encoding, or conflicting Content-Lengths):
	// 400, and the connection is closed.
	ErrBadFraming = errors.New("ambiguous request framing")
	// ErrTooLarge means the webhook can never be stored: its body is over
	// HTTP_BODY_LIMIT, or the message over NATS's max payload (413, and Svix
	// is told to stop retrying).
	ErrTooLarge = errors.New("webhook too large to store")
	// ErrRateLimited means a source sent more verified webhooks than
	// RATE_LIMIT allows (429).
	ErrRateLimited = errors.New("rate limit exceeded")
	// ErrRefusedTooOften means a client address had too many requests
	// refused (REFUSED_RATE_LIMIT); it gets 429 without further work.
	ErrRefusedTooOften = errors.New("too many refused requests from this address")
	// ErrBusy means the bodies in flight already use HTTP_MAX_INFLIGHT_BYTES
	// (503); Svix retries.
	ErrBusy = errors.New("too many webhook bodies in flight")
	// ErrBodyRead means the body could not be read in time or in full.
	ErrBodyRead = errors.New("request body not read")
	// ErrUnavailable means JetStream could not store the event (503); Svix retries.
	ErrUnavailable = errors.New("jetstream unavailable")
	// ErrStreamFull means the stream is at NATS_STREAM_MAX_BYTES and refuses
	// new events rather than evict stored ones (503); Svix retries.
	ErrStreamFull = errors.New("stream full")
	// ErrPublishTimeout means JetStream did not acknowledge in time (503); Svix
	// retries and the duplicate window drops the copy if the first one was stored.
	ErrPublishTimeout = errors.New("jetstream did not acknowledge in time")
)
