package gateway

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
)

// errorBody is the JSON body of every error answer. Code is stable; Message is
// for humans and never contains a secret.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classification is how an error is answered.
type classification struct {
	status  int
	code    string
	outcome string
	// retryAfter asks the client to come back later.
	retryAfter bool
	// refused spends one of the client address's refusals.
	refused bool
	// abort tells Svix to stop retrying (webhook-delivery: abort-message):
	// only for what can never be stored.
	abort bool
}

// classify maps an error to its answer. It is the one place that decides status
// codes; handlers only return errors.
func classify(err error) classification {
	unauthorized := func(code string) classification {
		return classification{status: fiber.StatusUnauthorized, code: code, outcome: outcomeUnauthorize, refused: true}
	}
	switch {
	case errors.Is(err, ErrMissingHeaders):
		return unauthorized("missing_signature_headers")
	case errors.Is(err, ErrMalformedHeaders):
		return unauthorized("malformed_signature_headers")
	case errors.Is(err, ErrTimestampTooOld):
		return unauthorized("timestamp_too_old")
	case errors.Is(err, ErrTimestampTooNew):
		return unauthorized("timestamp_too_new")
	case errors.Is(err, ErrSignatureMismatch):
		return unauthorized("invalid_signature")
	case errors.Is(err, ErrUnknownSource):
		return classification{status: fiber.StatusNotFound, code: "unknown_source", outcome: outcomeNotFound, refused: true}
	case errors.Is(err, ErrBadFraming):
		return classification{status: fiber.StatusBadRequest, code: "bad_framing", outcome: outcomeError, refused: true}
	case errors.Is(err, ErrTooLarge):
		return classification{status: fiber.StatusRequestEntityTooLarge, code: "body_too_large", outcome: outcomeTooLarge, refused: true, abort: true}
	case errors.Is(err, ErrRefusedTooOften):
		return classification{status: fiber.StatusTooManyRequests, code: "refused_too_often", outcome: outcomeRefusedTooOften, retryAfter: true}
	case errors.Is(err, ErrRateLimited):
		return classification{status: fiber.StatusTooManyRequests, code: "rate_limited", outcome: outcomeRateLimited, retryAfter: true}
	case errors.Is(err, ErrBusy):
		return classification{status: fiber.StatusServiceUnavailable, code: "busy", outcome: outcomeBusy, retryAfter: true}
	case errors.Is(err, ErrBodyRead):
		return classification{status: fiber.StatusRequestTimeout, code: "body_not_read", outcome: outcomeError, refused: true}
	case errors.Is(err, ErrStreamFull):
		return classification{status: fiber.StatusServiceUnavailable, code: "stream_full", outcome: outcomeStreamFull, retryAfter: true}
	case errors.Is(err, ErrPublishTimeout):
		return classification{status: fiber.StatusServiceUnavailable, code: "publish_timeout", outcome: outcomeUnavailable, retryAfter: true}
	case errors.Is(err, ErrUnavailable):
		return classification{status: fiber.StatusServiceUnavailable, code: "unavailable", outcome: outcomeUnavailable, retryAfter: true}
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusRequestEntityTooLarge:
			return classification{status: fe.Code, code: "body_too_large", outcome: outcomeTooLarge, refused: true, abort: true}
		case fiber.StatusNotFound:
			return classification{status: fe.Code, code: "not_found", outcome: outcomeNotFound, refused: true}
		case fiber.StatusMethodNotAllowed:
			return classification{status: fe.Code, code: "method_not_allowed", outcome: outcomeNotFound, refused: true}
		case fiber.StatusRequestTimeout:
			return classification{status: fe.Code, code: "request_timeout", outcome: outcomeError, refused: true}
		}
		if fe.Code >= 400 && fe.Code < 500 {
			return classification{status: fe.Code, code: "bad_request", outcome: outcomeError, refused: true}
		}
	}
	return classification{status: fiber.StatusInternalServerError, code: "internal", outcome: outcomeError}
}

func (g *Gateway) handleError(c *fiber.Ctx, err error) error {
	cl := classify(err)
	source, _ := c.Locals(localSource).(string)
	client, _ := c.Locals(localClient).(string)
	ctx := c.UserContext()
	msg := err.Error()
	switch cl.status {
	case fiber.StatusInternalServerError:
		g.log.ErrorContext(ctx, "webhook request failed", "err", err, "path", c.Path())
		msg = "internal error"
	case fiber.StatusServiceUnavailable:
		level := g.log.WarnContext
		if cl.code == "stream_full" {
			level = g.log.ErrorContext
			msg = "the stream is full (NATS_STREAM_MAX_BYTES); stored events are never evicted to make room"
		}
		level(ctx, "webhook not stored; asked the sender to retry", "err", err, "source", source)
	case fiber.StatusUnauthorized:
		g.metrics.verifyFailed(cl.code)
		g.log.InfoContext(ctx, "webhook refused", "reason", cl.code, "source", source, "client", client)
	case fiber.StatusRequestEntityTooLarge:
		msg = fmt.Sprintf("webhook can never be stored: body over HTTP_BODY_LIMIT (%d bytes) or message over NATS's max_payload (%d bytes)", g.cfg.BodyLimit, g.cfg.MaxPayload)
		g.log.WarnContext(ctx, "webhook too large to store; told the sender to stop retrying", "err", err, "source", source, "client", client)
	}
	// Only webhook endpoints count as requests; a scan of random paths does not.
	if cl.outcome != outcomeNotFound || source != "" || errors.Is(err, ErrUnknownSource) {
		g.metrics.request(cl.outcome, source)
	}
	if cl.refused && g.refusals != nil && client != "" {
		g.refusals.refused(client)
	}
	if cl.abort {
		c.Set("webhook-delivery", "abort-message")
	}
	if cl.retryAfter {
		wait := g.cfg.RetryAfter
		switch cl.code {
		case "rate_limited":
			if src := g.sources[source]; src != nil && src.limiter != nil {
				wait = time.Duration(math.Ceil(float64(time.Second) / float64(src.limiter.Limit())))
			}
		case "refused_too_often":
			wait = g.refusedRetryAfter()
		}
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	}
	if !bodyConsumed(c) {
		// The rest of the body is still on the wire: reading the next
		// request from this connection would start inside it.
		c.Context().SetConnectionClose()
	}
	return c.Status(cl.status).JSON(errorBody{Error: errorDetail{Code: cl.code, Message: msg}})
}

// bodyConsumed reports whether the request body was read to its end, so the
// connection can carry another request.
func bodyConsumed(c *fiber.Ctx) bool {
	consumed, _ := c.Locals(localConsumed).(bool)
	return consumed
}

const localConsumed = "consumed"
