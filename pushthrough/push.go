package pushthrough

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/distribution/distribution/v3"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/reference"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	ecrauth "github.com/ecr-proxy/ecr-proxy/auth"
	"github.com/ecr-proxy/ecr-proxy/internal/counting"
	"github.com/ecr-proxy/ecr-proxy/internal/logx"
	"github.com/ecr-proxy/ecr-proxy/internal/redact"
	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// Errors of the push passthrough.
var (
	// ErrBadTrustedProxy is returned by ParseTrustedProxies.
	ErrBadTrustedProxy = errors.New("bad trusted proxy")
	// errNoNamespace: the write-through has not been given distribution's
	// local namespace (its registry middleware did not run).
	errNoNamespace = errors.New("no local namespace")
	// errTokenRefused: ECR refused the token of a streamed upload request,
	// which cannot be replayed.
	errTokenRefused = errors.New("ECR refused the token of a streamed upload request")
)

// maxPeek bounds how much of a refused answer's body is drained.
const maxPeek = 4 << 10

// Messages of the answers the passthrough writes itself.
const (
	msgPushUnavailable = "the upstream registry could not be reached; retry the push later"
	// msgReferrersUnavailable answers a referrers list, a read that is
	// not cached, while ECR cannot be reached.
	msgReferrersUnavailable = "the upstream registry could not be reached and referrers are not cached; retry later"
	msgTokenRenewed         = "the registry credentials expired during the upload and have been renewed; retry the upload"
	msgManifestTooBig       = "manifest larger than 4 MiB"
)

// Passthrough forwards the registry API's writes (blob uploads, manifest
// PUT, DELETE) to one ECR registry with the proxy's ECR token, streaming
// bodies both ways. See the package documentation.
type Passthrough struct {
	target *url.URL
	rt     http.RoundTripper
	router *mux.Router
	prefix string // http.prefix, without its final slash
	ext    ExternalURL
	access distauth.AccessController
	wt     *WriteThrough
	log    logrus.FieldLogger
	proxy  *httputil.ReverseProxy
}

var _ http.Handler = (*Passthrough)(nil)

// PassthroughOption configures a Passthrough.
type PassthroughOption func(*Passthrough)

// WithExternalURL sets how clients reach the proxy, for upload Locations.
func WithExternalURL(x ExternalURL) PassthroughOption {
	return func(p *Passthrough) { p.ext = x }
}

// WithAccessController checks every write with ac, distribution's access
// controller built from the same auth: section as the app's (see
// AccessControllerFromConfig); nil, the default, lets every write pass.
func WithAccessController(ac distauth.AccessController) PassthroughOption {
	return func(p *Passthrough) { p.access = ac }
}

// WithWriteThrough copies pushed content into the local cache through wt.
func WithWriteThrough(wt *WriteThrough) PassthroughOption {
	return func(p *Passthrough) { p.wt = wt }
}

// WithPathPrefix sets distribution's http.prefix, under which the API's
// routes are served.
func WithPathPrefix(prefix string) PassthroughOption {
	return func(p *Passthrough) {
		p.router = v2.RouterWithPrefix(prefix)
		p.prefix = strings.TrimSuffix(prefix, "/")
	}
}

// WithPushLogger sets the logger (default: discard); each write is
// logged at info level, without credentials.
func WithPushLogger(l logrus.FieldLogger) PassthroughOption {
	return func(p *Passthrough) {
		if l != nil {
			p.log = l
		}
	}
}

// NewPassthrough returns a Passthrough to the registry at registryURL
// ("https://<account>.dkr.ecr.<region>.amazonaws.com"), sending through
// rt, which must authenticate to it (auth.Transport).
func NewPassthrough(registryURL string, rt http.RoundTripper, opts ...PassthroughOption) (*Passthrough, error) {
	u, err := url.Parse(registryURL)
	if err != nil {
		return nil, fmt.Errorf("parse registry URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("registry URL %q: want http(s)://host[:port]", registryURL)
	}
	if rt == nil {
		return nil, errors.New("new passthrough: nil round tripper")
	}
	p := &Passthrough{
		target: &url.URL{Scheme: u.Scheme, Host: u.Host},
		rt:     rt,
		router: v2.Router(),
		wt:     NewWriteThrough(), // no namespace: copies nothing
		log:    logx.Discard(),
	}
	for _, o := range opts {
		o(p)
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      rt,
		FlushInterval:  -1,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
	}
	return p, nil
}

// writeKind is one of the writes the passthrough forwards.
type writeKind int

const (
	uploadStart    writeKind = iota + 1 // POST /v2/<name>/blobs/uploads/
	uploadStatus                        // GET /v2/<name>/blobs/uploads/<id>
	uploadChunk                         // PATCH /v2/<name>/blobs/uploads/<id>
	uploadComplete                      // PUT /v2/<name>/blobs/uploads/<id>?digest=
	uploadCancel                        // DELETE /v2/<name>/blobs/uploads/<id>
	manifestPut                         // PUT /v2/<name>/manifests/<ref>
	manifestDelete                      // DELETE /v2/<name>/manifests/<ref>
	blobDelete                          // DELETE /v2/<name>/blobs/<digest>
	// referrersList is GET /v2/<name>/referrers/<digest>: a read, but one
	// distribution v3.1.2 has no API for, so it goes to ECR like a write
	// (pull access checked, nothing cached: the list grows with pushes).
	referrersList
)

// referrersPath matches the referrers API under the API root.
var referrersPath = regexp.MustCompile(`^/v2/(` + reference.NameRegexp.String() + `)/referrers/(` + digest.DigestRegexp.String() + `)$`)

// write is a classified write request: its repository and its upload ID,
// manifest reference or digest, each validated by distribution's route
// patterns.
type write struct {
	kind writeKind
	repo string
	ref  string
}

// path is the write's path at ECR, rebuilt from validated parts only.
func (w write) path() string {
	switch w.kind {
	case uploadStart:
		return "/v2/" + w.repo + "/blobs/uploads/"
	case uploadStatus, uploadChunk, uploadComplete, uploadCancel:
		return "/v2/" + w.repo + "/blobs/uploads/" + w.ref
	case manifestPut, manifestDelete:
		return "/v2/" + w.repo + "/manifests/" + w.ref
	case referrersList:
		return "/v2/" + w.repo + "/referrers/" + w.ref
	default:
		return "/v2/" + w.repo + "/blobs/" + w.ref
	}
}

func (w write) hasUpload() bool { return w.kind >= uploadStatus && w.kind <= uploadCancel }

// match classifies r with distribution's own routes; reads and anything
// else are not writes.
func (p *Passthrough) match(r *http.Request) (write, bool) {
	if r.Method == http.MethodHead {
		return write{}, false // no write, and the upload status is a GET
	}
	if r.Method == http.MethodGet {
		if sm := referrersPath.FindStringSubmatch(strings.TrimPrefix(r.URL.Path, p.prefix)); sm != nil {
			return write{kind: referrersList, repo: sm[1], ref: sm[2]}, true
		}
	}
	var m mux.RouteMatch
	if !p.router.Match(r, &m) || m.Route == nil {
		return write{}, false
	}
	name := m.Vars["name"]
	var kind writeKind
	ref := ""
	switch m.Route.GetName() {
	case v2.RouteNameBlobUpload:
		if r.Method == http.MethodPost {
			kind = uploadStart
		}
	case v2.RouteNameBlobUploadChunk:
		ref = m.Vars["uuid"]
		kind = map[string]writeKind{
			http.MethodGet: uploadStatus, http.MethodPatch: uploadChunk,
			http.MethodPut: uploadComplete, http.MethodDelete: uploadCancel,
		}[r.Method]
	case v2.RouteNameManifest:
		ref = m.Vars["reference"]
		kind = map[string]writeKind{http.MethodPut: manifestPut, http.MethodDelete: manifestDelete}[r.Method]
	case v2.RouteNameBlob:
		ref = m.Vars["digest"]
		if r.Method == http.MethodDelete {
			kind = blobDelete
		}
	}
	if kind == 0 || name == "" {
		return write{}, false
	}
	return write{kind: kind, repo: name, ref: ref}, true
}

// ServeHTTP forwards r when it is a write and answers 404 otherwise.
func (p *Passthrough) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.ServeWrite(w, r) {
		wire.WriteError(w, http.StatusNotFound, "UNSUPPORTED", "not a registry write")
	}
}

// ServeWrite forwards r to ECR when it is one of the writes the
// passthrough handles (or a referrers list) and reports whether it did;
// when it reports false, nothing was written to w and r is the caller's.
func (p *Passthrough) ServeWrite(w http.ResponseWriter, r *http.Request) bool {
	wr, ok := p.match(r)
	if ok {
		p.serve(w, r, wr)
	}
	return ok
}

// Sanitize removes from r the forwarding headers (X-Forwarded-Proto,
// X-Forwarded-Host, Forwarded) that its direct peer is not trusted to
// set, so that nothing after the gateway, distribution included, is
// misled by a client. Call it on every request, before any handler reads
// them.
func (p *Passthrough) Sanitize(r *http.Request) { p.ext.sanitize(r) }

// PathPrefix is distribution's http.prefix the passthrough routes under,
// without its final slash ("" when none).
func (p *Passthrough) PathPrefix() string { return p.prefix }

// AccessController is the access controller writes are checked with; nil
// when there is no client authentication.
func (p *Passthrough) AccessController() distauth.AccessController { return p.access }

// Upstream returns a copy of the registry URL writes go to (scheme and
// host only).
func (p *Passthrough) Upstream() *url.URL {
	u := *p.target
	return &u
}

// Transport is the round tripper requests to ECR go through (it carries
// the proxy's ECR token).
func (p *Passthrough) Transport() http.RoundTripper { return p.rt }

// LocalNamespace is distribution's local namespace the write-through
// copies into, nil until its registry middleware has run.
func (p *Passthrough) LocalNamespace() distribution.Namespace {
	if p.wt == nil {
		return nil
	}
	return p.wt.namespace()
}

// Ready reports whether the write-through's table of upload sessions can
// be locked before ctx ends: an error means the upload path is wedged.
func (p *Passthrough) Ready(ctx context.Context) error {
	if p.wt == nil {
		return nil
	}
	return p.wt.Ready(ctx)
}

// exchange is the state of one forwarded write, shared by the reverse
// proxy's hooks through the request context.
type exchange struct {
	write    write
	in       *http.Request
	start    time.Time
	upstream *url.URL
	body     io.ReadCloser // replaces the outgoing body when set
	manifest []byte        // a manifest PUT's body
	sent     *counting.Body
	streamed bool // the request carries a body that cannot be replayed
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

func (p *Passthrough) serve(w http.ResponseWriter, r *http.Request, wr write) {
	if !p.authorize(w, r, wr.repo) {
		return
	}
	u := *p.target
	u.Path = wr.path()
	u.RawQuery = r.URL.RawQuery
	ex := &exchange{write: wr, in: r, start: time.Now(), upstream: &u}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	switch {
	case wr.kind == manifestPut && hasBody:
		// Manifests are small: read whole, so that auth.Transport can
		// replay them with a fresh token and the cache can store them.
		b, err := io.ReadAll(io.LimitReader(r.Body, wire.MaxManifestSize+1))
		if err != nil {
			return // the client went away
		}
		if len(b) > wire.MaxManifestSize {
			wire.WriteError(w, http.StatusRequestEntityTooLarge, "MANIFEST_INVALID", msgManifestTooBig)
			return
		}
		ex.manifest = b
	case (wr.kind == uploadChunk || wr.kind == uploadComplete) && hasBody:
		ex.streamed = true
		// The transport closes the body it sends when ECR answers
		// early; the client's body stays open so that errorHandler
		// can drain it (the server closes it after the handler).
		ex.sent = counting.NewBody(p.wt.tee(r.Context(), wr.repo, wr.ref, io.NopCloser(r.Body), r.Header.Get("Content-Range")), nil)
		ex.body = ex.sent
	}
	p.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex)))
}

// rewrite points the outgoing request at ECR, on the validated path, and
// drops the client's credentials and forwarding headers.
func (p *Passthrough) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeFrom(pr.In.Context())
	pr.Out.URL = ex.upstream
	pr.Out.Host = ""
	for _, h := range append([]string{"Authorization", "Cookie"}, forwardingHeaders...) {
		pr.Out.Header.Del(h)
	}
	switch {
	case ex.manifest != nil:
		m := ex.manifest
		pr.Out.Body = io.NopCloser(bytes.NewReader(m))
		pr.Out.ContentLength = int64(len(m))
		pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(m)), nil }
	case ex.body != nil && pr.Out.Body != nil:
		pr.Out.Body = ex.body
	}
}

// modifyResponse adapts ECR's answer for the client and feeds the
// write-through.
func (p *Passthrough) modifyResponse(resp *http.Response) error {
	ex := exchangeFrom(resp.Request.Context())
	wr := ex.write
	if ex.streamed && ecrauth.RefusedToken(resp) && p.renewToken(ex) {
		return errTokenRefused
	}
	if resp.StatusCode == http.StatusUnauthorized {
		// ECR's Basic challenge is for the proxy, not for the client.
		resp.Header.Del("Www-Authenticate")
	}
	ecrLocation := resp.Header.Get("Location")
	if ecrLocation != "" {
		resp.Header.Set("Location", p.ext.rewriteLocation(ecrLocation, ex.upstream, ex.in))
	}
	if wr.kind == uploadChunk && resp.StatusCode == http.StatusCreated {
		// ECR answers a chunk with 201; the distribution spec (and its
		// conformance tests) say 202.
		resp.StatusCode, resp.Status = http.StatusAccepted, "202 Accepted"
	}
	p.feedWriteThrough(ex, resp, ecrLocation)
	p.logWrite(ex, resp.StatusCode, nil)
	return nil
}

func (p *Passthrough) feedWriteThrough(ex *exchange, resp *http.Response, ecrLocation string) {
	wr, ok := ex.write, resp.StatusCode/100 == 2
	ctx := context.WithoutCancel(ex.in.Context())
	switch wr.kind {
	case uploadStart:
		if resp.StatusCode == http.StatusAccepted {
			p.wt.begin(wr.repo, uploadID(ecrLocation, ex.upstream))
		}
	case uploadChunk:
		if ok {
			p.wt.chunkDone(wr.repo, wr.ref, resp.Header.Get("Range"))
		} else {
			p.wt.drop(wr.repo, wr.ref, "ECR answered the chunk with "+resp.Status)
		}
	case uploadComplete:
		if resp.StatusCode == http.StatusCreated {
			p.wt.commit(ctx, wr.repo, wr.ref, ex.in.URL.Query().Get("digest"))
		} else {
			p.wt.drop(wr.repo, wr.ref, "ECR answered the upload's end with "+resp.Status)
		}
	case uploadCancel:
		p.wt.drop(wr.repo, wr.ref, "")
	case manifestPut:
		if resp.StatusCode == http.StatusCreated {
			p.wt.putManifest(ctx, wr.repo, wr.ref, ex.in.Header.Get("Content-Type"), ex.manifest, resp.Header.Get("Docker-Content-Digest"))
		}
	case manifestDelete:
		if ok {
			p.wt.deleteManifest(ctx, wr.repo, wr.ref)
		}
	}
}

// errorHandler answers when ECR could not be reached (or the token could
// not be had, or was refused mid-upload) with 503 UNAVAILABLE, which
// clients retry.
func (p *Passthrough) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeFrom(r.Context())
	if ex.write.hasUpload() {
		p.wt.drop(ex.write.repo, ex.write.ref, "the request to ECR failed")
	}
	p.logWrite(ex, 0, err)
	if r.Context().Err() != nil {
		return // the client went away; nobody reads an answer
	}
	if ex.streamed {
		drainBody(w, r.Body)
	}
	w.Header().Set("Retry-After", "1")
	msg := msgPushUnavailable
	switch {
	case errors.Is(err, errTokenRefused):
		msg = msgTokenRenewed
	case ex.write.kind == referrersList:
		msg = msgReferrersUnavailable
	}
	wire.WriteError(w, http.StatusServiceUnavailable, "UNAVAILABLE", msg)
}

// Bounds of drainBody.
const (
	maxDrain     = 32 << 20
	drainTimeout = 10 * time.Second
)

// drainBody reads and discards what the client still sends of a chunk
// that ECR will not get, at most maxDrain bytes for at most drainTimeout,
// before the 503 goes out. An answer sent over a body still arriving
// makes the server close the connection with bytes unread, and the
// client's kernel may then see a reset and drop the 503 it had received:
// the client would see "connection reset by peer" instead of an error it
// knows to retry. Past the bounds the connection is closed as before.
func drainBody(w http.ResponseWriter, body io.Reader) {
	if body == nil {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(drainTimeout)) // not every writer supports it
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	_ = rc.SetReadDeadline(time.Time{})
}

// renewToken runs after ECR refused the token of a streamed upload
// request, which auth.Transport cannot replay: it asks ECR for the upload
// session's status, a request without a body, which the transport sends
// again with a fresh token after a refusal. It reports whether ECR then
// accepted a token, that is whether the client's retry can succeed.
func (p *Passthrough) renewToken(ex *exchange) bool {
	u := *p.target
	u.Path = write{kind: uploadStatus, repo: ex.write.repo, ref: ex.write.ref}.path()
	u.RawQuery = ex.in.URL.RawQuery
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ex.in.Context()), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false
	}
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		return false
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxPeek))
		_ = resp.Body.Close()
	}()
	renewed := !ecrauth.RefusedToken(resp)
	p.log.WithFields(logrus.Fields{
		"repository": ex.write.repo, "upload": ex.write.ref,
		"session_status": resp.StatusCode, "session_range": resp.Header.Get("Range"),
	}).Warnf("push: ECR refused the token during an upload; token renewed: %t; the client is told to retry", renewed)
	return renewed
}

// uploadID returns the upload ID in ECR's Location for a new session.
func uploadID(loc string, upstream *url.URL) string {
	u, err := url.Parse(loc)
	if err != nil {
		return ""
	}
	_, id, ok := strings.Cut(upstream.ResolveReference(u).Path, "/blobs/uploads/")
	if !ok || strings.Contains(id, "/") {
		return ""
	}
	return id
}

// String names the write in the push log.
func (k writeKind) String() string {
	switch k {
	case uploadStart:
		return "upload start"
	case uploadStatus:
		return "upload status"
	case uploadChunk:
		return "upload chunk"
	case uploadComplete:
		return "upload end"
	case uploadCancel:
		return "upload cancel"
	case manifestPut:
		return "manifest put"
	case manifestDelete:
		return "manifest delete"
	case blobDelete:
		return "blob delete"
	case referrersList:
		return "referrers list"
	}
	return "unknown"
}

func (p *Passthrough) logWrite(ex *exchange, status int, err error) {
	f := logrus.Fields{
		"write":      ex.write.kind.String(),
		"repository": ex.write.repo,
		"duration":   time.Since(ex.start).Round(time.Millisecond).String(),
	}
	if ex.write.ref != "" {
		f["reference"] = ex.write.ref
	}
	if ex.sent != nil {
		f["bytes"] = ex.sent.N()
	}
	if err != nil {
		p.log.WithFields(f).WithError(redact.Error(err)).Warn("push")
		return
	}
	f["status"] = status
	p.log.WithFields(f).Info("push")
}
