package metrics

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ecr-proxy/ecr-proxy/internal/counting"
	"github.com/ecr-proxy/ecr-proxy/internal/redact"
)

// Kinds of upstream request, the values of the kind label of the
// ecrproxy_upstream_* metrics.
const (
	upstreamPing     = "ping"     // GET /v2/, the API version check
	upstreamManifest = "manifest" // /v2/<name>/manifests/<reference>
	upstreamBlob     = "blob"     // /v2/<name>/blobs/<digest>
	upstreamTags     = "tags"     // /v2/<name>/tags/list
	upstreamUpload   = "upload"   // /v2/<name>/blobs/uploads/[<uuid>]
	upstreamS3       = "s3"       // a presigned S3 URL ECR redirected a blob GET to
	upstreamOther    = "other"    // anything else
)

// transport is the RoundTripper InstrumentTransport returns.
type transport struct {
	base     http.RoundTripper
	rec      *recorder
	registry string
}

var _ http.RoundTripper = (*transport)(nil)

// InstrumentTransport returns an http.RoundTripper that sends requests
// with base and records each one in the ecrproxy_upstream_* metrics: its
// kind (ping, manifest, blob, tags, upload, s3 or other, from the URL
// path and query only), method, status code and the time until the
// response headers arrived, and the bytes of its body as they are read.
// No part of the URL becomes a label.
//
// Put it under auth.Transport (auth.WithBase), so that it sees every hop:
// the registry requests, each replay after a refused token, and the
// redirects to S3.
func (m *Metrics) InstrumentTransport(base http.RoundTripper) http.RoundTripper {
	return m.rec.instrument(m.registry, base)
}

func (r *recorder) instrument(registry string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base, rec: r, registry: registry}
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	kind, method := upstreamKind(req.URL), methodLabel(req.Method)
	start := t.rec.now()
	resp, err := t.base.RoundTrip(req)
	t.rec.upDuration.WithLabelValues(t.registry, kind, method).Observe(t.rec.now().Sub(start).Seconds())
	if err != nil {
		t.rec.upRequests.WithLabelValues(t.registry, kind, method, "error").Inc()
		return resp, err
	}
	t.rec.upRequests.WithLabelValues(t.registry, kind, method, codeLabel(resp.StatusCode)).Inc()
	if resp.Body != nil && resp.Body != http.NoBody && resp.StatusCode != http.StatusSwitchingProtocols {
		bytes := t.rec.upBytes.WithLabelValues(t.registry, kind)
		resp.Body = counting.NewBody(resp.Body, func(n int64) { bytes.Add(float64(n)) })
	}
	return resp, nil
}

// upstreamKind classifies a request to ECR or S3 by its URL. Only the
// route shapes of the distribution API are recognised, from the end of
// the path, so that a repository name cannot change the answer
// ("/v2/team/blobs/manifests/latest" is a manifest).
func upstreamKind(u *url.URL) string {
	p := u.Path
	if !strings.HasPrefix(p, "/v2/") && p != "/v2" {
		if isS3(u) {
			return upstreamS3
		}
		return upstreamOther
	}
	if p == "/v2/" || p == "/v2" {
		return upstreamPing
	}
	seg := strings.Split(strings.TrimPrefix(p, "/v2/"), "/")
	n := len(seg)
	// A repository name has at least one component before the route.
	switch {
	case n >= 2 && seg[n-2] == "blobs" && strings.Contains(seg[n-1], ":") && nameOK(seg[:n-2]):
		return upstreamBlob // a digest has a colon, an upload id none
	case n >= 3 && seg[n-2] == "uploads" && seg[n-3] == "blobs" && nameOK(seg[:n-3]):
		return upstreamUpload // .../blobs/uploads/ and .../blobs/uploads/<id>
	case n >= 2 && seg[n-2] == "manifests" && seg[n-1] != "" && nameOK(seg[:n-2]):
		return upstreamManifest
	case n >= 2 && seg[n-2] == "tags" && seg[n-1] == "list" && nameOK(seg[:n-2]):
		return upstreamTags
	}
	return upstreamOther
}

// nameOK reports whether the path segments before a route can be a
// repository name: at least one, none empty.
func nameOK(seg []string) bool {
	if len(seg) == 0 {
		return false
	}
	for _, s := range seg {
		if s == "" {
			return false
		}
	}
	return true
}

// isS3 reports whether u is a presigned URL (SigV4 or V2 query signature)
// or addresses an S3 endpoint by host name.
func isS3(u *url.URL) bool {
	if redact.IsPresigned(u) {
		return true
	}
	host := strings.ToLower(u.Hostname())
	return strings.HasSuffix(host, ".amazonaws.com") &&
		(strings.HasPrefix(host, "s3.") || strings.HasPrefix(host, "s3-") ||
			strings.Contains(host, ".s3.") || strings.Contains(host, ".s3-"))
}

// methodLabel is the request method, or "other" outside the methods the
// registry API uses.
func methodLabel(m string) string {
	switch m {
	case "":
		return http.MethodGet
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete:
		return m
	}
	return "other"
}

// codeLabel is the status code, or "other" for a value outside 100-599.
func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}
