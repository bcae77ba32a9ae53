package natsx

import "errors"

var (
	// ErrInvalidConfig means a NATS or stream setting is out of range; the error
	// text names the setting.
	ErrInvalidConfig = errors.New("invalid NATS configuration")
	// ErrEmbeddedStart means the embedded JetStream server did not start.
	ErrEmbeddedStart = errors.New("embedded NATS server did not start")
	// ErrConnect means the connection to NATS could not be established.
	ErrConnect = errors.New("connect to NATS")
	// ErrStreamSetup means a stream could not be created or updated.
	ErrStreamSetup = errors.New("stream setup")
)
