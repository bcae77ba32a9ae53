package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/semaphore"
)

// checkFraming refuses a request whose length is ambiguous: RFC 9112 says a
// server must treat Content-Length together with Transfer-Encoding, or two
// different Content-Lengths, as an error and close the connection, since
// two parties reading it differently is how requests are smuggled.
func checkFraming(h *fasthttp.RequestHeader) error {
	var lengths [][]byte
	te := false
	for line := range bytes.SplitSeq(h.RawHeaders(), []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			lengths = append(lengths, bytes.TrimSpace(value))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			te = true
		}
	}
	if te && len(lengths) > 0 {
		return fmt.Errorf("%w: both Content-Length and Transfer-Encoding", ErrBadFraming)
	}
	for _, l := range lengths[min(1, len(lengths)):] {
		if !bytes.Equal(l, lengths[0]) {
			return fmt.Errorf("%w: conflicting Content-Length headers", ErrBadFraming)
		}
	}
	return nil
}

// budget bounds the memory all in-flight bodies may use together.
type budget struct {
	sem *semaphore.Weighted
}

func newBudget(bytes int64) *budget { return &budget{sem: semaphore.NewWeighted(bytes)} }

// take reserves n bytes or fails at once with ErrBusy.
func (b *budget) take(n int64) error {
	if !b.sem.TryAcquire(n) {
		return fmt.Errorf("%w: %d bytes wanted", ErrBusy, n)
	}
	return nil
}

func (b *budget) give(n int64) { b.sem.Release(n) }

// bufPool recycles body buffers; oversized ones are dropped so one huge
// webhook doesn't pin memory.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooled = 64 << 10

func getBuf() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooled {
		b.Reset()
		bufPool.Put(b)
	}
}

// readBody reads the request body from the stream fasthttp hands over
// (StreamRequestBody), at most limit bytes, into buf. The server's read
// deadline bounds how long a slow client can take.
func readBody(ctx context.Context, req *fasthttp.Request, limit int64, buf *bytes.Buffer) error {
	stream := req.BodyStream()
	if stream == nil {
		buf.Write(req.Body()) // a body fasthttp already read whole
		return nil
	}
	if cl := req.Header.ContentLength(); cl > 0 {
		buf.Grow(cl + bytes.MinRead) // one allocation of the right size, not doubling
	}
	n, err := buf.ReadFrom(io.LimitReader(stream, limit+1))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrBodyRead, ctx.Err())
		}
		return fmt.Errorf("%w: %v", ErrBodyRead, err)
	}
	if n > limit {
		return fmt.Errorf("%w: body over %d bytes", ErrTooLarge, limit)
	}
	if cl := req.Header.ContentLength(); cl >= 0 && n != int64(cl) {
		return fmt.Errorf("%w: %d of %d bytes", ErrBodyRead, n, cl)
	}
	return nil
}
