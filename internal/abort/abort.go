// Package abort lets code deep inside distribution's app ask that the
// response it is writing be aborted (the connection dropped, so that a
// body of unknown length is not taken as complete), by the gateway
// outside that app. Panicking with http.ErrAbortHandler inside the app
// would reach distribution's panic handler, which logs it at panic level
// and panics again with another value: net/http then prints a stack
// trace for what is an expected upstream failure.
package abort

import (
	"context"
	"sync/atomic"
)

// Flag records that a request's response must be aborted.
type Flag struct{ set atomic.Bool }

type flagKey struct{}

// With returns ctx carrying a new, unset Flag, for the handler that will
// abort the response (by panicking with http.ErrAbortHandler) once the
// inner handler returns, if the flag is set.
func With(ctx context.Context) (context.Context, *Flag) {
	f := &Flag{}
	return context.WithValue(ctx, flagKey{}, f), f
}

// Request sets the Flag ctx carries and reports whether there was one:
// if not, nobody outside will abort the response.
func Request(ctx context.Context) bool {
	f, ok := ctx.Value(flagKey{}).(*Flag)
	if !ok || f == nil {
		return false
	}
	f.set.Store(true)
	return true
}

// Requested reports whether the response must be aborted.
func (f *Flag) Requested() bool { return f != nil && f.set.Load() }
