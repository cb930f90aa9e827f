package gateway

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/health"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// WithTagHeads answers a HEAD of a manifest by tag (what a client sends
// to resolve a tag before pulling) ahead of distribution's app, when the
// cache holds the manifest ECR names for the tag. It asks ECR exactly
// what distribution's proxy asks (a HEAD by tag through the passthrough's
// transport), then checks the cache, keeps the local tag current as
// distribution's proxy does, and answers with the headers distribution
// would send; distribution's app would also read and parse the manifest
// twice (once for its notifications) and write through its routing,
// repository and logging layers, most of a warm tag pull's time.
//
// Only the simple case is answered here: no http.prefix, no
// If-None-Match, ECR answered 200 with a digest and a length, the
// manifest's media type is one the client's Accept lists by name, and the
// cache links the manifest into the repository. Everything else (ECR
// failing or refusing, a tag ECR does not know, content negotiation) goes
// to distribution, which asks ECR again and answers as before. headers
// are the configuration's http.headers. Do not use it with a tag
// revalidation window (ecr.tagttl): inside the window distribution
// answers without asking ECR at all.
func WithTagHeads(headers http.Header) Option {
	return func(h *handler) {
		h.tagHeads, h.configHeaders = true, headers
	}
}

// serveTagHead answers a HEAD by tag and reports whether it did; when it
// did not, it wrote nothing.
func (h *handler) serveTagHead(w http.ResponseWriter, r *http.Request) bool {
	p := h.push
	if r.Method != http.MethodHead || p == nil || p.PathPrefix() != "" || r.Header.Get("If-None-Match") != "" {
		return false
	}
	repo, tag, ok := tagPath(r.URL.Path)
	if !ok || len(health.CheckStatus(r.Context())) > 0 {
		return false
	}
	if ac := p.AccessController(); ac != nil {
		res := distauth.Resource{Type: "repository", Name: repo}
		if _, err := ac.Authorized(r, distauth.Access{Resource: res, Action: "pull"}); err != nil {
			return false
		}
	}
	ns := p.LocalNamespace()
	if ns == nil {
		return false
	}
	desc, ok := h.upstreamTag(r, repo, tag)
	if !ok {
		return false
	}
	ctx := r.Context()
	named, err := reference.WithName(repo)
	if err != nil {
		return false
	}
	local, err := ns.Repository(ctx, named)
	if err != nil {
		return false
	}
	ms, err := local.Manifests(ctx)
	if err != nil {
		return false
	}
	if have, err := ms.Exists(ctx, desc.Digest); err != nil || !have {
		return false
	}
	tags := local.Tags(ctx)
	if cur, err := tags.Get(ctx, tag); err != nil || cur.Digest != desc.Digest {
		if err := tags.Tag(ctx, tag, desc); err != nil {
			h.log.WithError(err).WithField("repository", repo).Debug("tag not recorded in the cache")
		}
	}
	hdr := w.Header()
	h.appHeaders(hdr)
	hdr.Set("Content-Type", desc.MediaType)
	hdr.Set("Content-Length", strconv.FormatInt(desc.Size, 10))
	hdr.Set("Docker-Content-Digest", desc.Digest.String())
	hdr.Set("Etag", `"`+desc.Digest.String()+`"`)
	w.WriteHeader(http.StatusOK)
	return true
}

// upstreamTag asks ECR for tag with the client's Accept header and
// returns the manifest's descriptor when ECR answered 200 with one whose
// media type the client accepts by name.
func (h *handler) upstreamTag(r *http.Request, repo, tag string) (v1.Descriptor, bool) {
	p := h.push
	u := p.Upstream()
	u.Path = "/v2/" + repo + "/manifests/" + tag
	req, err := http.NewRequestWithContext(r.Context(), http.MethodHead, u.String(), http.NoBody)
	if err != nil {
		return v1.Descriptor{}, false
	}
	for _, a := range r.Header.Values("Accept") {
		req.Header.Add("Accept", a)
	}
	resp, err := p.Transport().RoundTrip(req)
	if err != nil {
		return v1.Descriptor{}, false
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength < 0 {
		return v1.Descriptor{}, false
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return v1.Descriptor{}, false
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || !accepts(r, mt) {
		return v1.Descriptor{}, false
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: resp.ContentLength}, true
}

// accepts reports whether r's Accept header names media type mt.
func accepts(r *http.Request, mt string) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if t, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && t == mt {
				return true
			}
		}
	}
	return false
}

// tagPath splits /v2/<name>/manifests/<tag> into a valid repository name
// and tag; a digest reference is not a tag.
func tagPath(p string) (string, string, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i <= 0 {
		return "", "", false
	}
	repo, tag := rest[:i], rest[i+len("/manifests/"):]
	if _, err := reference.WithName(repo); err != nil || !anchoredTag(tag) {
		return "", "", false
	}
	return repo, tag, true
}

// anchoredTag reports whether s is a tag (distribution's reference
// grammar, [\w][\w.-]{0,127}).
func anchoredTag(s string) bool {
	loc := reference.TagRegexp.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}
