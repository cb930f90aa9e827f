package gateway

import (
	"net/http"
	"strings"
	"time"
)

// Option configures the gateway handler.
type Option func(*handler)

// WithUpstream sets the tracker the handler asks whether ECR is failing.
func WithUpstream(u *Upstream) Option { return func(h *handler) { h.upstream = u } }

// New returns the outer handler around next, distribution's registry.
func New(next http.Handler, opts ...Option) http.Handler {
	h := &handler{next: next}
	for _, o := range opts {
		o(h)
	}
	return h
}

type handler struct {
	next     http.Handler
	upstream *Upstream
}

var _ http.Handler = (*handler)(nil)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.upstream == nil || !isContentRead(r) {
		h.next.ServeHTTP(w, r)
		return
	}
	hw := &honestWriter{ResponseWriter: w, upstream: h.upstream, start: time.Now()}
	h.next.ServeHTTP(hw, r)
}

// isContentRead reports whether r reads a manifest, blob or tag list.
func isContentRead(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	return strings.HasPrefix(p, "/v2/") &&
		(strings.Contains(p, "/manifests/") || strings.Contains(p, "/blobs/") || strings.HasSuffix(p, "/tags/list"))
}

// honestWriter replaces a failure answered while the upstream was failing
// with 503 UNAVAILABLE, and drops the body distribution writes after it.
type honestWriter struct {
	http.ResponseWriter
	upstream    *Upstream
	start       time.Time
	wroteHeader bool
	replaced    bool
}

func (w *honestWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	if (code == http.StatusNotFound || code >= http.StatusInternalServerError) && w.upstream.FailedSince(w.start) {
		w.replaced = true
		for k := range w.Header() {
			w.Header().Del(k)
		}
		w.Header().Set("Retry-After", "10")
		writeError(w.ResponseWriter, http.StatusServiceUnavailable, "UNAVAILABLE", msgUpstreamUnavailable)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *honestWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *honestWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush forwards to the underlying writer unless the answer was replaced.
func (w *honestWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.replaced {
		f.Flush()
	}
}
