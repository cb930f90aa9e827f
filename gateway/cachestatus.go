package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/abort"
	"github.com/ecr-proxy/ecr-proxy/internal/stale"
	"github.com/ecr-proxy/ecr-proxy/internal/storagefail"
)

// fetchRecorder notes what a request made the proxy do upstream: whether
// it fetched content (a manifest or blob GET) and how long its upstream
// round trips took, for X-Cache-Status and the request log.
type fetchRecorder struct {
	fetched  atomic.Bool
	refused  atomic.Bool // GuardManifests refused an upstream manifest
	calls    atomic.Int64
	upstream atomic.Int64           // nanoseconds until response headers, summed
	stale    *stale.Note            // why the answer is served stale (pullthrough)
	cause    atomic.Pointer[string] // why its last upstream round trip failed
	abort    *abort.Flag            // the response must be aborted (pullthrough)
	storage  *storagefail.Flag      // the cache's storage failed
}

type recorderKey struct{}

func withRecorder(ctx context.Context) (context.Context, *fetchRecorder) {
	ctx, note := stale.With(ctx)
	ctx, flag := abort.With(ctx)
	ctx, storage := storagefail.With(ctx)
	rec := &fetchRecorder{stale: note, abort: flag, storage: storage}
	return context.WithValue(ctx, recorderKey{}, rec), rec
}

// noteFetch records an upstream round trip made on behalf of the request
// whose context req carries. A HEAD (the proxy revalidating a tag) is not
// a fetch.
func noteFetch(req *http.Request) {
	rec, ok := req.Context().Value(recorderKey{}).(*fetchRecorder)
	if !ok || req.Method != http.MethodGet {
		return
	}
	if p := req.URL.Path; strings.Contains(p, "/manifests/") || strings.Contains(p, "/blobs/") {
		rec.fetched.Store(true)
	}
}

// UpstreamTimer wraps the upstream transport so that the time each round
// trip takes (until its response headers) is added to the request it was
// made for, for the gateway's request log. Install it below the token
// transport.
func UpstreamTimer(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		rec, ok := req.Context().Value(recorderKey{}).(*fetchRecorder)
		if !ok {
			return rt.RoundTrip(req)
		}
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		rec.calls.Add(1)
		rec.upstream.Add(int64(time.Since(start)))
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// newRequestID returns a random request id for the log.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// noteCause records why an upstream round trip made for the request
// whose context req carries failed.
func noteCause(req *http.Request, cause string) {
	if req == nil {
		return
	}
	if rec, ok := req.Context().Value(recorderKey{}).(*fetchRecorder); ok {
		rec.cause.Store(&cause)
	}
}

// noteRefused records that an upstream manifest was refused; r may be nil
// (no client request).
func (r *fetchRecorder) noteRefused() {
	if r != nil {
		r.refused.Store(true)
	}
}
