package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
)

// CacheStatusHeader is the seed proxy's response header saying whether a
// blob or manifest came from the cache (HIT) or from ECR (MISS).
const CacheStatusHeader = "X-Cache-Status"

// fetchRecorder notes whether a request made the proxy fetch content
// (a manifest or blob GET) from ECR.
type fetchRecorder struct{ fetched atomic.Bool }

type recorderKey struct{}

func withRecorder(ctx context.Context) (context.Context, *fetchRecorder) {
	rec := &fetchRecorder{}
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
