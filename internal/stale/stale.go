// Package stale carries, in a request's context, why a response is
// served from the cache without ECR's confirmation (X-Cache-Status:
// STALE): pullthrough marks it, the gateway labels and logs it.
package stale

import (
	"context"
	"sync"
)

// Note holds the reason a request's answer is stale; the zero value
// holds none. It is safe for concurrent use.
type Note struct {
	mu     sync.Mutex
	reason string
}

type noteKey struct{}

// With returns ctx carrying a new, empty Note.
func With(ctx context.Context) (context.Context, *Note) {
	n := &Note{}
	return context.WithValue(ctx, noteKey{}, n), n
}

// Mark records in the Note ctx carries, if any, that the answer is
// served stale because of reason (which must hold no secret).
func Mark(ctx context.Context, reason string) {
	if n, ok := ctx.Value(noteKey{}).(*Note); ok && n != nil {
		n.mu.Lock()
		n.reason = reason
		n.mu.Unlock()
	}
}

// Reason is why the answer is stale, or "" if it is not.
func (n *Note) Reason() string {
	if n == nil {
		return ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reason
}
