// Package counting holds the one body wrapper that counts the bytes read
// through it, for the push log (pushthrough) and the upstream byte
// counters (metrics).
package counting

import (
	"io"
	"sync/atomic"
)

// Body is an io.ReadCloser that counts the bytes read through it and,
// when given a function, reports each read's count to it as well. The
// count may be read from another goroutine than the one reading the body
// (an HTTP transport reads request bodies on its own).
type Body struct {
	io.ReadCloser
	n   atomic.Int64
	add func(n int64)
}

// NewBody wraps rc; add, when not nil, is called with the size of every
// read that returned bytes, on the reading goroutine. It must not block.
func NewBody(rc io.ReadCloser, add func(n int64)) *Body {
	return &Body{ReadCloser: rc, add: add}
}

// Read reads from the wrapped body and counts what it returned.
func (b *Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.n.Add(int64(n))
		if b.add != nil {
			b.add(int64(n))
		}
	}
	return n, err
}

// N is the number of bytes read so far.
func (b *Body) N() int64 { return b.n.Load() }
