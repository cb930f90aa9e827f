package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// Route is one upstream registry of a Router: the repositories whose
// names begin with Prefix are the registry's, without the prefix.
type Route struct {
	// Prefix is the first path components of the local repository names
	// the registry serves, without slashes at its ends ("shared",
	// "team/prod"): local "shared/base/alpine" is "base/alpine" there.
	Prefix string
	// URL is the registry's URL, http(s)://host[:port].
	URL string
	// Transport sends the registry's requests: its own *Transport, with
	// its own token source.
	Transport http.RoundTripper
	// Region, when set, is the region the registry's S3 redirects are
	// signed for: a presigned URL whose credential names it is sent
	// through this route's Transport (its metrics), not the first's.
	Region string
}

// route is a Route with its URL parsed.
type route struct {
	Route
	target *url.URL
}

// Router is an http.RoundTripper for several ECR registries behind one
// virtual upstream URL. A request to the virtual host for repository
// "<prefix>/<name>" goes to the registry of that prefix, for repository
// "<name>", through that registry's Transport; the Location and Link
// headers of its answer are turned back into the virtual host and the
// prefixed name, so that callers (distribution's proxy, the push
// passthrough) never learn that there are several registries. The API
// version check (GET /v2/) goes to every registry. Requests to any other
// host (the S3 URLs ECR redirects blob GETs to) go through the Transport
// of the route whose Region the URL's signature names, else the first
// route's; a Transport passes them on unchanged.
type Router struct {
	virtual *url.URL
	routes  []route
	other   http.RoundTripper
}

var _ http.RoundTripper = (*Router)(nil)

// NewRouter returns a Router answering for virtualURL
// (http(s)://host[:port], a name that is never dialled) with routes,
// whose prefixes must pass CheckPrefixes.
func NewRouter(virtualURL string, routes []Route) (*Router, error) {
	v, err := parseBaseURL(virtualURL)
	if err != nil {
		return nil, fmt.Errorf("virtual upstream: %w", err)
	}
	if len(routes) == 0 {
		return nil, errors.New("new router: no registries")
	}
	prefixes := make([]string, 0, len(routes))
	r := &Router{virtual: v}
	for _, rt := range routes {
		u, err := parseBaseURL(rt.URL)
		if err != nil {
			return nil, fmt.Errorf("registry of prefix %q: %w", rt.Prefix, err)
		}
		if rt.Transport == nil {
			return nil, fmt.Errorf("registry of prefix %q: nil transport", rt.Prefix)
		}
		prefixes = append(prefixes, rt.Prefix)
		r.routes = append(r.routes, route{Route: rt, target: u})
	}
	if err := CheckPrefixes(prefixes); err != nil {
		return nil, err
	}
	r.other = r.routes[0].Transport
	return r, nil
}

// parseBaseURL parses http(s)://host[:port] with no path.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse URL %q: %w", raw, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("URL %q: want http(s)://host[:port]", raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// Prefixes are the routes' prefixes, in the order they were given.
func (r *Router) Prefixes() []string {
	out := make([]string, len(r.routes))
	for i, rt := range r.routes {
		out[i] = rt.Prefix
	}
	return out
}

// Match returns the route of the local repository name and the name
// the registry knows it by; false when no prefix matches, or the name is
// the prefix alone.
func (r *Router) Match(name string) (Route, string, bool) {
	rt, remote, ok := r.match(name)
	if !ok {
		return Route{}, "", false
	}
	return rt.Route, remote, true
}

func (r *Router) match(name string) (*route, string, bool) {
	for i := range r.routes {
		rt := &r.routes[i]
		if rest, ok := strings.CutPrefix(name, rt.Prefix+"/"); ok && rest != "" {
			return rt, rest, true
		}
	}
	return nil, "", false
}

// apiPath splits a distribution API path into the repository name and
// the route after it. The name is as long as the route allows, so that a
// repository may have a component named like a route ("a/manifests").
var apiPath = regexp.MustCompile(`^/v2/(.+)(/(?:blobs/uploads/?[^/]*|blobs/[^/]+|manifests/[^/]+|tags/list|referrers/[^/]+))$`)

// SplitAPIPath returns the repository name in a distribution API path
// (/v2/<name>/manifests/<ref>, blobs, uploads, tags/list, referrers) and
// the path after it; false for other paths.
func SplitAPIPath(p string) (name, rest string, ok bool) {
	m := apiPath.FindStringSubmatch(p)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// RoundTrip implements http.RoundTripper.
func (r *Router) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.EqualFold(req.URL.Scheme, r.virtual.Scheme) || wire.CanonicalHost(req.URL) != wire.CanonicalHost(r.virtual) {
		return r.otherFor(req.URL).RoundTrip(req)
	}
	if req.URL.Path == "/v2/" || req.URL.Path == "/v2" {
		return r.ping(req)
	}
	name, rest, ok := SplitAPIPath(req.URL.Path)
	if !ok {
		closeBody(req)
		return r.errorResponse(req, http.StatusNotFound, "UNSUPPORTED", "not a repository path of the registry API"), nil
	}
	rt, remote, ok := r.match(name)
	if !ok {
		closeBody(req)
		return r.errorResponse(req, http.StatusNotFound, "NAME_UNKNOWN", r.UnknownNameMessage(name)), nil
	}
	out := req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host, u.Path, u.RawPath = rt.target.Scheme, rt.target.Host, "/v2/"+remote+rest, ""
	u.RawQuery = r.rewriteMount(rt, u.Query(), u.RawQuery)
	out.URL, out.Host = &u, ""
	resp, err := rt.Transport.RoundTrip(out)
	if resp != nil {
		r.rewriteResponse(rt, resp)
		resp.Request = req
	}
	return resp, err
}

// otherFor is the Transport for a URL on another host: the route whose
// Region a presigned URL's credential scope (X-Amz-Credential,
// key/date/region/service/aws4_request) names, else the first route's.
func (r *Router) otherFor(u *url.URL) http.RoundTripper {
	scope := strings.Split(u.Query().Get("X-Amz-Credential"), "/")
	if len(scope) == 5 {
		for i := range r.routes {
			if r.routes[i].Region != "" && r.routes[i].Region == scope[2] {
				return r.routes[i].Transport
			}
		}
	}
	return r.other
}

// UnknownNameMessage says that name has no configured prefix, or is a
// prefix alone (no repository under it), listing the prefixes.
func (r *Router) UnknownNameMessage(name string) string {
	for _, rt := range r.routes {
		if name == rt.Prefix {
			return fmt.Sprintf("%q is a registry prefix, not a repository: name a repository under it, such as %s/<repository>; the prefixes are: %s/",
				name, name, strings.Join(r.Prefixes(), "/, "))
		}
	}
	return fmt.Sprintf("repository %q is under no configured registry prefix; the prefixes are: %s/",
		name, strings.Join(r.Prefixes(), "/, "))
}

// rewriteMount turns a cross-repository mount's from= into the
// registry's name when it is the same registry's; a mount from another
// registry cannot work, so it becomes a plain upload (what a registry
// answers a mount it cannot do with anyway).
func (r *Router) rewriteMount(rt *route, q url.Values, raw string) string {
	from := q.Get("from")
	if from == "" {
		return raw
	}
	if src, remote, ok := r.match(from); ok && src == rt {
		q.Set("from", remote)
	} else {
		q.Del("from")
		q.Del("mount")
	}
	return q.Encode()
}

// rewriteResponse turns the registry's URLs in resp's Location and Link
// headers into the virtual host's, with the prefixed name.
func (r *Router) rewriteResponse(rt *route, resp *http.Response) {
	if loc := resp.Header.Get("Location"); loc != "" {
		resp.Header.Set("Location", r.virtualURL(rt, loc))
	}
	links := resp.Header.Values("Link")
	if len(links) == 0 {
		return
	}
	out := make([]string, len(links))
	for i, l := range links {
		out[i] = l
		start, end := strings.Index(l, "<"), strings.Index(l, ">")
		if start >= 0 && end > start {
			out[i] = l[:start+1] + r.virtualURL(rt, l[start+1:end]) + l[end:]
		}
	}
	resp.Header["Link"] = out
}

// virtualURL maps a URL of rt's registry to the virtual host and the
// prefixed name; URLs elsewhere (S3) are returned unchanged. A relative
// URL stays relative.
func (r *Router) virtualURL(rt *route, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	abs := rt.target.ResolveReference(u)
	if !strings.EqualFold(abs.Scheme, rt.target.Scheme) || wire.CanonicalHost(abs) != wire.CanonicalHost(rt.target) {
		return raw
	}
	name, rest, ok := SplitAPIPath(abs.Path)
	if !ok {
		return raw
	}
	out := &url.URL{Path: "/v2/" + rt.Prefix + "/" + name + rest, RawQuery: abs.RawQuery}
	if u.IsAbs() {
		out.Scheme, out.Host = r.virtual.Scheme, r.virtual.Host
	}
	return out.String()
}

// ping sends the API version check to every registry at once and
// answers with the first answer below 500, without waiting for the
// others (drained as they come), so that a registry that is down or
// does not answer neither hides nor delays the others; when none
// answers below 500, with the first route's answer or error.
func (r *Router) ping(req *http.Request) (*http.Response, error) {
	closeBody(req)
	results := make(chan pingResult, len(r.routes))
	for i := range r.routes {
		go func() {
			rt := &r.routes[i]
			out := req.Clone(req.Context())
			u := *req.URL
			u.Scheme, u.Host = rt.target.Scheme, rt.target.Host
			out.URL, out.Host, out.Body = &u, "", http.NoBody
			resp, err := rt.Transport.RoundTrip(out) //nolint:bodyclose // drained below, or returned to the caller
			results <- pingResult{i, resp, err}
		}()
	}
	var first pingResult
	for n := range len(r.routes) {
		x := <-results
		if x.err == nil && x.resp.StatusCode < http.StatusInternalServerError {
			if first.resp != nil {
				drain(first.resp)
			}
			go drainRest(results, len(r.routes)-n-1)
			x.resp.Request = req
			return x.resp, nil
		}
		if x.i == 0 {
			first = x
		} else if x.resp != nil {
			drain(x.resp)
		}
	}
	if first.resp != nil {
		first.resp.Request = req
	}
	return first.resp, first.err
}

// pingResult is one registry's answer to the API version check.
type pingResult struct {
	i    int // the route's index
	resp *http.Response
	err  error
}

// drainRest drains the n answers still to come on results.
func drainRest(results <-chan pingResult, n int) {
	for range n {
		if x := <-results; x.resp != nil {
			drain(x.resp)
		}
	}
}

// errorResponse is a registry API error answer made up by the router.
func (r *Router) errorResponse(req *http.Request, status int, code, message string) *http.Response {
	body, _ := json.Marshal(map[string][]map[string]string{"errors": {{"code": code, "message": message}}})
	h := http.Header{}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(string(body))), ContentLength: int64(len(body)),
		Request: req,
	}
}

// PingEach sends GET /v2/ to every registry through its own Transport
// and returns each one's outcome by prefix: nil for an answer below 500
// (its 401 challenge included), else why not.
func (r *Router) PingEach(ctx context.Context) map[string]error {
	out := make(map[string]error, len(r.routes))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for i := range r.routes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt := &r.routes[i]
			err := pingOne(ctx, rt.target.String()+"/v2/", rt.Transport)
			mu.Lock()
			out[rt.Prefix] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func pingOne(ctx context.Context, target string, rt http.RoundTripper) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	drain(resp)
	if resp.StatusCode >= http.StatusInternalServerError {
		return fmt.Errorf("ping: ECR answered %s", resp.Status)
	}
	return nil
}
