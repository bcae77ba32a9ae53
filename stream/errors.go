package stream

import "errors"

var (
	// ErrNotOurs means a subject is not in the subject map.
	ErrNotOurs = errors.New("not a spectora-stream subject")
	// ErrUndecodable means a message body is not the protobuf its
	// Content-Type names, or the Content-Type is unknown.
	ErrUndecodable = errors.New("undecodable message")
	// ErrNotDeadLetter means a message lacks the dead-letter headers.
	ErrNotDeadLetter = errors.New("not a dead letter")
)
