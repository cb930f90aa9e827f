package gateway

import (
	"net/http"
	"strings"
	"time"

	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/logx"
	"github.com/ecr-proxy/ecr-proxy/internal/wire"
	"github.com/ecr-proxy/ecr-proxy/pushthrough"
)

// Option configures the gateway handler.
type Option func(*handler)

// WithPassthrough makes the gateway send the registry API's writes to p.
// Without it, writes go to distribution, which refuses them (405) in
// proxy mode.
func WithPassthrough(p *pushthrough.Passthrough) Option { return func(h *handler) { h.push = p } }

// WithUpstream sets the tracker the handler asks whether ECR is failing.
func WithUpstream(u *Upstream) Option { return func(h *handler) { h.upstream = u } }

// WithUpstreamFor sets a function that picks the tracker of the registry
// a request goes to, for several registries: one registry failing then
// turns no other registry's 404 into a 503. When it returns nil, the
// WithUpstream tracker is asked.
func WithUpstreamFor(pick func(r *http.Request) *Upstream) Option {
	return func(h *handler) { h.upstreamFor = pick }
}

// upstreamOf is the tracker of the registry r goes to.
func (h *handler) upstreamOf(r *http.Request) *Upstream {
	if h.upstreamFor != nil {
		if u := h.upstreamFor(r); u != nil {
			return u
		}
	}
	return h.upstream
}

// New returns the outer handler around next, distribution's registry.
func New(next http.Handler, opts ...Option) http.Handler {
	h := &handler{next: next, upstream: NewUpstream(), log: logx.Discard(), served: func(*http.Request, string, bool, int64) {}}
	for _, o := range opts {
		o(h)
	}
	return h
}

type handler struct {
	next     http.Handler
	upstream *Upstream
	// upstreamFor picks the tracker per request (WithUpstreamFor).
	upstreamFor func(r *http.Request) *Upstream
	probe       ProbeFunc
	degraded    []componentCheck // reported on /readyz without failing it
	// registriesProbe is WithRegistriesProbe's, for several registries.
	registriesProbe RegistriesProbeFunc
	log             logrus.FieldLogger
	push            *pushthrough.Passthrough // writes go to ECR
	served          func(r *http.Request, kind string, hit bool, bytes int64)

	files         BlobFiles // blob hits served from their files (blobfiles.go)
	tagHeads      bool      // HEADs by tag answered from ECR's HEAD and the cache (taghead.go)
	filesAccess   distauth.AccessController
	configHeaders http.Header
}

// WithServedObserver sets a function called once per manifest or blob GET
// answered with success, with the request (whose path names the
// repository, and so the registry), whether it came from the cache and
// the body bytes sent, such as a registry's metrics.ObserveServed. It
// must not block.
func WithServedObserver(f func(r *http.Request, kind string, hit bool, bytes int64)) Option {
	return func(h *handler) {
		if f != nil {
			h.served = f
		}
	}
}

// WithLogger sets the logger; the default discards.
func WithLogger(l logrus.FieldLogger) Option {
	return func(h *handler) {
		if l != nil {
			h.log = l
		}
	}
}

var _ http.Handler = (*handler)(nil)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.serveHealth(w, r) || rejectInvalid(w, r) {
		return
	}
	if h.push != nil {
		h.push.Sanitize(r)
		if h.push.ServeWrite(w, r) {
			return
		}
	}
	if !isContentRead(r) {
		h.next.ServeHTTP(w, r)
		return
	}
	ctx, rec := withRecorder(r.Context())
	rw := &readWriter{ResponseWriter: w, upstream: h.upstreamOf(r), start: time.Now(), rec: rec,
		content: !strings.HasSuffix(r.URL.Path, "/tags/list")}
	served := h.files != nil && h.serveBlobFile(rw, r.WithContext(ctx))
	served = served || h.tagHeads && h.serveTagHead(rw, r.WithContext(ctx))
	if !served {
		h.next.ServeHTTP(rw, r.WithContext(ctx))
	}
	if rw.cacheStatus != "" && r.Method == http.MethodGet {
		h.served(r, contentKind(r.URL.Path), rw.cacheStatus != wire.CacheMiss, rw.written)
	}
	h.logRead(r, rw, rec)
	if rec.abort.Requested() {
		// The body could not be completed and its length is unknown:
		// only dropping the connection tells the client. net/http logs
		// no stack trace for this panic value.
		panic(http.ErrAbortHandler)
	}
}

// logRead writes the request log line of a manifest, blob or tag read:
// the request id, what was asked, the answer, the cache status, and the
// time and number of the upstream round trips it caused. Paths carry no
// secret; query strings are left out.
func (h *handler) logRead(r *http.Request, rw *readWriter, rec *fetchRecorder) {
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 128 {
		id = newRequestID()
	}
	fields := logrus.Fields{
		"request_id":        id,
		"method":            r.Method,
		"path":              r.URL.Path,
		"status":            status,
		"bytes":             rw.written,
		"duration":          time.Since(rw.start).String(),
		"cache_status":      rw.cacheStatus,
		"upstream_requests": rec.calls.Load(),
		"upstream_duration": time.Duration(rec.upstream.Load()).String(),
	}
	if reason := rec.stale.Reason(); reason != "" {
		fields["stale_reason"] = reason
	}
	if rw.cause != "" {
		fields["upstream_cause"] = rw.cause
	}
	if rec.abort.Requested() {
		fields["aborted"] = true
	}
	h.log.WithFields(fields).Info("request")
}

// contentKind is "manifest" or "blob" for a content path.
func contentKind(p string) string {
	if strings.LastIndex(p, "/manifests/") > strings.LastIndex(p, "/blobs/") {
		return "manifest"
	}
	return "blob"
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

// readWriter wraps the response to a content read. It replaces a failure
// answered while the upstream was failing with 503 UNAVAILABLE (dropping
// the body distribution writes after it), and marks manifests and blobs
// served with X-Cache-Status.
type readWriter struct {
	http.ResponseWriter
	upstream    *Upstream
	start       time.Time
	rec         *fetchRecorder
	content     bool // a manifest or blob, not a tag list
	wroteHeader bool
	replaced    bool
	cacheStatus string // HIT, MISS or STALE, when set on the response
	written     int64  // body bytes written to the client
	status      int    // the status sent
	cause       string // why ECR failed, when the answer was replaced by 503
}

func (w *readWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	w.status = code
	if code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
		if ra := w.upstream.RetryAfter(); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
	}
	if w.content && code >= 200 && code < 300 {
		if w.rec.stale.Reason() != "" {
			w.Header().Set(wire.CacheStatusHeader, wire.CacheStale)
		} else if w.Header().Get(wire.CacheStatusHeader) == "" {
			status := wire.CacheHit
			if w.rec.fetched.Load() {
				status = wire.CacheMiss
			}
			w.Header().Set(wire.CacheStatusHeader, status)
		}
		w.cacheStatus = w.Header().Get(wire.CacheStatusHeader)
	}
	if code >= http.StatusInternalServerError && w.rec.refused.Load() {
		w.replaced = true
		w.status = http.StatusBadGateway
		for k := range w.Header() {
			w.Header().Del(k)
		}
		wire.WriteError(w.ResponseWriter, http.StatusBadGateway, "MANIFEST_INVALID", msgManifestRefused)
		return
	}
	if code >= http.StatusInternalServerError && w.rec.storage.Failed() {
		w.replaced = true
		w.status = http.StatusServiceUnavailable
		w.cause = "the cache storage is unavailable"
		for k := range w.Header() {
			w.Header().Del(k)
		}
		w.Header().Set("Retry-After", "10")
		wire.WriteError(w.ResponseWriter, http.StatusServiceUnavailable, "UNAVAILABLE", msgStorageUnavailable)
		return
	}
	if (code == http.StatusNotFound || code >= http.StatusInternalServerError) && w.upstream.FailedSince(w.start) {
		w.replaced = true
		w.status = http.StatusServiceUnavailable
		// distribution logs the error it meant to answer (such as
		// "manifest unknown"); the request log says what ECR did.
		w.cause = w.upstream.Cause()
		if c := w.rec.cause.Load(); c != nil {
			w.cause = *c
		}
		for k := range w.Header() {
			w.Header().Del(k)
		}
		w.Header().Set("Retry-After", "10")
		wire.WriteError(w.ResponseWriter, http.StatusServiceUnavailable, "UNAVAILABLE", msgUpstreamUnavailable)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *readWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return len(p), nil
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *readWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush forwards to the underlying writer unless the answer was replaced.
func (w *readWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.replaced {
		f.Flush()
	}
}
