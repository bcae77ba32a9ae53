package natsx

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnchanged, returned by an Update function, leaves the key as it is.
var ErrUnchanged = errors.New("unchanged")

// UpdateKey reads key, lets f compute its new value from the current one
// (nil when the key doesn't exist) and writes it only if nobody wrote the
// key in between (compare and set on its revision), reading again after a
// conflict. f returning ErrUnchanged writes nothing; other errors are
// returned as they are.
func UpdateKey(ctx context.Context, kv jetstream.KeyValue, key string, f func(current []byte) ([]byte, error)) error {
	for range 20 {
		var current []byte
		var rev uint64
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			current, rev = entry.Value(), entry.Revision()
		}
		next, err := f(current)
		if errors.Is(err, ErrUnchanged) {
			return nil
		}
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, next)
		} else {
			_, err = kv.Update(ctx, key, next, rev)
		}
		if err == nil || !isConflict(err) {
			return err
		}
	}
	return fmt.Errorf("key %s: too many concurrent writers", key)
}

// isConflict reports whether a Create or Update lost a race with another writer.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
