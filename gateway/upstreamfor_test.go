package gateway

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUpstreamForKeepsRegistriesApart: a registry that fails while a
// request to another registry is answered 404 turns that 404 into a 503
// only when both share one tracker.
func TestUpstreamForKeepsRegistriesApart(t *testing.T) {
	shared, prod := NewUpstream(), NewUpstream()
	// distribution's answer: "shared" fails meanwhile, prod says 404.
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://shared.invalid/v2/", nil)
		shared.Observe(req, nil, errors.New("dial tcp: connection refused"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`))
	})
	pick := func(r *http.Request) *Upstream {
		if strings.HasPrefix(r.URL.Path, "/v2/prod/") {
			return prod
		}
		return nil
	}
	for _, c := range []struct {
		name string
		opts []Option
		want int
	}{
		{"one tracker for both", []Option{WithUpstream(shared)}, http.StatusServiceUnavailable},
		{"a tracker per registry", []Option{WithUpstream(shared), WithUpstreamFor(pick)}, http.StatusNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := New(next, c.opts...)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/prod/app/manifests/1", nil))
			if rec.Code != c.want {
				t.Errorf("status %d, want %d (%s)", rec.Code, c.want, rec.Body)
			}
		})
	}
}
