package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstreamRecorder is a registry stand-in on loopback that records what
// reached it and answers with a header set chosen by the test.
type upstreamRecorder struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []recorded
	status   int
	headers  http.Header
	// arrived gets a value for each request, once it is recorded.
	arrived chan struct{}
}

type recorded struct {
	method, path, query, auth string
}

func newUpstreamRecorder(t *testing.T) *upstreamRecorder {
	t.Helper()
	u := &upstreamRecorder{status: http.StatusOK, headers: http.Header{}, arrived: make(chan struct{}, 64)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.requests = append(u.requests, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization")})
		status := u.status
		for k, v := range u.headers {
			w.Header()[k] = v
		}
		u.mu.Unlock()
		select {
		case u.arrived <- struct{}{}:
		default: // nobody waits for that many
		}
		if r.URL.Path == "/v2/" && r.Header.Get("Authorization") == "" && status < 500 {
			status = http.StatusUnauthorized
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "from "+r.Host)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// waitArrived waits until n more requests have reached u.
func (u *upstreamRecorder) waitArrived(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-u.arrived:
		case <-timeout:
			t.Fatalf("%d requests did not reach %s", n, u.srv.URL)
		}
	}
}

func (u *upstreamRecorder) got() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.requests...)
}

func (u *upstreamRecorder) answer(status int, h http.Header) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.status, u.headers = status, h
}

const virtualURL = "https://registries.ecr-proxy.invalid"

// newTestRouter routes "shared" to a and "team/prod" to b, each through
// its own Transport and token source.
func newTestRouter(t *testing.T, a, b *upstreamRecorder) (*Router, *fakeECR, *fakeECR) {
	t.Helper()
	var apis [2]*fakeECR
	var routes []Route
	for i, x := range []struct {
		prefix string
		up     *upstreamRecorder
	}{{"shared", a}, {"team/prod", b}} {
		apis[i] = &fakeECR{}
		src, err := NewTokenSource(apis[i])
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTransport(x.up.srv.URL, src)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, Route{Prefix: x.prefix, URL: x.up.srv.URL, Transport: tr})
	}
	r, err := NewRouter(virtualURL, routes)
	if err != nil {
		t.Fatal(err)
	}
	return r, apis[0], apis[1]
}

// answer is what do read of a response, its body closed.
type answer struct {
	StatusCode int
	Header     http.Header
	Body       io.Reader
	Request    *http.Request
}

func do(t *testing.T, rt http.RoundTripper, method, target string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return answer{resp.StatusCode, resp.Header, strings.NewReader(string(body)), resp.Request}
}

func TestRouterRoutesByPrefixWithEachRegistrysToken(t *testing.T) {
	a, b := newUpstreamRecorder(t), newUpstreamRecorder(t)
	r, apiA, apiB := newTestRouter(t, a, b)

	do(t, r, http.MethodGet, virtualURL+"/v2/shared/base/alpine/manifests/3.20")
	do(t, r, http.MethodHead, virtualURL+"/v2/team/prod/app/blobs/sha256:"+strings.Repeat("a", 64))
	do(t, r, http.MethodGet, virtualURL+"/v2/team/prod/app/tags/list?n=10&last=v1")
	// A repository may have a component named like a route.
	do(t, r, http.MethodGet, virtualURL+"/v2/shared/x/manifests/manifests/latest")

	wantA := []recorded{
		{http.MethodGet, "/v2/base/alpine/manifests/3.20", "", basic("pw-1")},
		{http.MethodGet, "/v2/x/manifests/manifests/latest", "", basic("pw-1")},
	}
	wantB := []recorded{
		{http.MethodHead, "/v2/app/blobs/sha256:" + strings.Repeat("a", 64), "", basic("pw-1")},
		{http.MethodGet, "/v2/app/tags/list", "n=10&last=v1", basic("pw-1")},
	}
	assertRecorded(t, "registry a", a.got(), wantA)
	assertRecorded(t, "registry b", b.got(), wantB)
	if apiA.Calls() != 1 || apiB.Calls() != 1 {
		t.Errorf("mints: a %d, b %d; want one each (each registry its own token source)", apiA.Calls(), apiB.Calls())
	}
}

func basic(pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("AWS:"+pw))
}

func assertRecorded(t *testing.T, what string, got, want []recorded) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s got %d requests %+v, want %+v", what, len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s request %d = %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

func TestRouterRewritesLocationAndLinkToThePrefixedName(t *testing.T) {
	a, b := newUpstreamRecorder(t), newUpstreamRecorder(t)
	r, _, _ := newTestRouter(t, a, b)
	cases := []struct {
		name, loc, want string
	}{
		{"absolute upload", b.srv.URL + "/v2/app/blobs/uploads/u-1?_state=s",
			virtualURL + "/v2/team/prod/app/blobs/uploads/u-1?_state=s"},
		{"relative upload", "/v2/app/blobs/uploads/u-2",
			"/v2/team/prod/app/blobs/uploads/u-2"},
		{"blob", b.srv.URL + "/v2/app/blobs/sha256:" + strings.Repeat("b", 64),
			virtualURL + "/v2/team/prod/app/blobs/sha256:" + strings.Repeat("b", 64)},
		{"another host (S3) is left alone", "http://127.0.0.2:9/bucket/x?X-Amz-Signature=s",
			"http://127.0.0.2:9/bucket/x?X-Amz-Signature=s"},
		{"the other registry's host is left alone", a.srv.URL + "/v2/app/blobs/uploads/u-3",
			a.srv.URL + "/v2/app/blobs/uploads/u-3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b.answer(http.StatusAccepted, http.Header{
				"Location": {c.loc},
				"Link":     {`</v2/app/tags/list?last=v2&n=10>; rel="next"`},
			})
			resp := do(t, r, http.MethodPost, virtualURL+"/v2/team/prod/app/blobs/uploads/")
			if got := resp.Header.Get("Location"); got != c.want {
				t.Errorf("Location = %q, want %q", got, c.want)
			}
			if got, want := resp.Header.Get("Link"), `</v2/team/prod/app/tags/list?last=v2&n=10>; rel="next"`; got != want {
				t.Errorf("Link = %q, want %q", got, want)
			}
			if resp.Request == nil || resp.Request.URL.Host != "registries.ecr-proxy.invalid" {
				t.Errorf("resp.Request is not the caller's request: %v", resp.Request)
			}
		})
	}
}

func TestRouterMountFromTheSameRegistryOnly(t *testing.T) {
	a, b := newUpstreamRecorder(t), newUpstreamRecorder(t)
	r, _, _ := newTestRouter(t, a, b)
	dg := "sha256:" + strings.Repeat("c", 64)
	do(t, r, http.MethodPost, virtualURL+"/v2/shared/x/blobs/uploads/?mount="+dg+"&from=shared/y")
	do(t, r, http.MethodPost, virtualURL+"/v2/shared/x/blobs/uploads/?mount="+dg+"&from=team/prod/app")
	got := a.got()
	if len(got) != 2 {
		t.Fatalf("registry a got %+v", got)
	}
	if got[0].query != "from=y&mount="+strings.ReplaceAll(dg, ":", "%3A") {
		t.Errorf("same-registry mount query = %q, want from=y", got[0].query)
	}
	if got[1].query != "" {
		t.Errorf("cross-registry mount query = %q, want a plain upload (no mount, no from)", got[1].query)
	}
}

func TestRouterUnknownPrefixIsNameUnknownListingPrefixes(t *testing.T) {
	a, b := newUpstreamRecorder(t), newUpstreamRecorder(t)
	r, _, _ := newTestRouter(t, a, b)
	for _, name := range []string{"other/app", "shared", "team/app", "sharedx/app"} {
		resp := do(t, r, http.MethodGet, virtualURL+"/v2/"+name+"/manifests/latest")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", name, resp.StatusCode)
		}
		var body struct {
			Errors []struct{ Code, Message string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if len(body.Errors) != 1 || body.Errors[0].Code != "NAME_UNKNOWN" ||
			!strings.Contains(body.Errors[0].Message, "shared/, team/prod/") {
			t.Errorf("%s: errors %+v, want NAME_UNKNOWN listing shared/ and team/prod/", name, body.Errors)
		}
		if alone := name == "shared"; len(body.Errors) == 1 && alone != strings.Contains(body.Errors[0].Message, "is a registry prefix, not a repository") {
			t.Errorf("%s: message %q; a prefix alone, and only it, is told to name a repository under it", name, body.Errors[0].Message)
		}
	}
	if n := len(a.got()) + len(b.got()); n != 0 {
		t.Errorf("%d requests reached a registry", n)
	}
}

func TestRouterPingReachesEveryRegistryAndSurvivesOneDown(t *testing.T) {
	a, b := newUpstreamRecorder(t), newUpstreamRecorder(t)
	r, _, _ := newTestRouter(t, a, b)
	resp := do(t, r, http.MethodGet, virtualURL+"/v2/")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("ping status %d, want the 401 challenge", resp.StatusCode)
	}
	a.waitArrived(t, 1)
	b.waitArrived(t, 1)
	if len(a.got()) != 1 || len(b.got()) != 1 {
		t.Errorf("pings: a %d, b %d; want one each", len(a.got()), len(b.got()))
	}
	if errs := r.PingEach(context.Background()); errs["shared"] != nil || errs["team/prod"] != nil {
		t.Errorf("PingEach with both up: %v", errs)
	}
	a.waitArrived(t, 1)
	b.waitArrived(t, 1)

	a.srv.Close()
	resp = do(t, r, http.MethodGet, virtualURL+"/v2/")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("ping with the first registry down: status %d, want the other's 401", resp.StatusCode)
	}
	errs := r.PingEach(context.Background())
	if errs["shared"] == nil || errs["team/prod"] != nil {
		t.Errorf("PingEach with shared down: %v; want an error for shared only", errs)
	}
	// The other registry still serves its prefix.
	if resp := do(t, r, http.MethodGet, virtualURL+"/v2/team/prod/app/manifests/v1"); resp.StatusCode != http.StatusOK {
		t.Errorf("team/prod with shared down: status %d", resp.StatusCode)
	}
}

func TestRouterSendsOtherHostsOnUnchanged(t *testing.T) {
	a, b := newUpstreamRecorder(t), newUpstreamRecorder(t)
	s3 := newUpstreamRecorder(t)
	r, _, _ := newTestRouter(t, a, b)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s3.srv.URL+"/bucket/obj?X-Amz-Signature=abc", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Basic placeholder")
	resp, err := r.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	got := s3.got()
	if len(got) != 1 || got[0].path != "/bucket/obj" || got[0].auth != "" {
		t.Errorf("S3 got %+v; want the presigned GET without Authorization", got)
	}
}

func TestCheckPrefixes(t *testing.T) {
	cases := []struct {
		prefixes []string
		want     error
	}{
		{[]string{"shared", "prod"}, nil},
		{[]string{"team/prod", "team/dev", "teams"}, nil},
		{[]string{"shared", "shared"}, ErrOverlappingPrefixes},
		{[]string{"team", "team/prod"}, ErrOverlappingPrefixes},
		{[]string{"team/prod/x", "team/prod"}, ErrOverlappingPrefixes},
		{[]string{""}, ErrBadPrefix},
		{[]string{"/shared"}, ErrBadPrefix},
		{[]string{"shared/"}, ErrBadPrefix},
		{[]string{"Shared"}, ErrBadPrefix},
		{[]string{"a//b"}, ErrBadPrefix},
	}
	for _, c := range cases {
		err := CheckPrefixes(c.prefixes)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("CheckPrefixes(%q) = %v, want %v", c.prefixes, err, c.want)
		}
		if err != nil && !strings.Contains(err.Error(), `"`+c.prefixes[0]+`"`) {
			t.Errorf("CheckPrefixes(%q) = %v: does not name the value", c.prefixes, err)
		}
	}
	if _, err := NewRouter(virtualURL, []Route{
		{Prefix: "a", URL: "http://127.0.0.1:1", Transport: http.DefaultTransport},
		{Prefix: "a/b", URL: "http://127.0.0.1:2", Transport: http.DefaultTransport},
	}); !errors.Is(err, ErrOverlappingPrefixes) {
		t.Errorf("NewRouter with overlapping prefixes: %v", err)
	}
}

// countingTransport counts the requests it sends on.
type countingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.base.RoundTrip(req)
}

func (c *countingTransport) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestRouterSendsPresignedURLsThroughTheirRegionsRoute(t *testing.T) {
	s3 := newUpstreamRecorder(t)
	a, b := &countingTransport{base: http.DefaultTransport}, &countingTransport{base: http.DefaultTransport}
	r, err := NewRouter(virtualURL, []Route{
		{Prefix: "shared", URL: "http://127.0.0.1:1", Transport: a, Region: "eu-west-1"},
		{Prefix: "prod", URL: "http://127.0.0.1:2", Transport: b, Region: "us-east-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"X-Amz-Credential=AKID%2F20261130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=s",
		"X-Amz-Credential=AKID%2F20261130%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=s",
		"X-Amz-Credential=AKID%2F20261130%2Fap-south-1%2Fs3%2Faws4_request&X-Amz-Signature=s",
	} {
		do(t, r, http.MethodGet, s3.srv.URL+"/bucket/obj?"+q)
	}
	if a.count() != 2 || b.count() != 1 {
		t.Errorf("sent through shared %d, prod %d; want 2 (its region, and the unknown one) and 1", a.count(), b.count())
	}
}

func TestRouterPingDoesNotWaitForARegistryThatHangs(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) })
	b := newUpstreamRecorder(t)
	var routes []Route
	for _, x := range []struct{ prefix, url string }{{"stuck", hung.URL}, {"prod", b.srv.URL}} {
		src, err := NewTokenSource(&fakeECR{})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTransport(x.url, src)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, Route{Prefix: x.prefix, URL: x.url, Transport: tr})
	}
	r, err := NewRouter(virtualURL, routes)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, virtualURL+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.RoundTrip(req)
	if err != nil {
		t.Fatalf("ping with one registry hanging: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("ping status %d, want the answering registry's 401", resp.StatusCode)
	}
}
