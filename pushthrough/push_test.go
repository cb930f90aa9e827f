package pushthrough

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// recorded is one request an upstream double received.
type recorded struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// scripted is an ECR double that answers with a function and records
// every request.
type scripted struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newScripted(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *scripted {
	t.Helper()
	s := &scripted{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		s.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

// basicTransport authenticates to the emulator as auth.Transport would.
type basicTransport struct{ user, password string }

func (b basicTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.password)
	return http.DefaultTransport.RoundTrip(r)
}

// newGateway serves the push passthrough to upstream in front of next
// (nil: an app answering 200 to /v2/ and 404 to the rest), as the
// gateway puts it in front of distribution's app: forwarding headers
// sanitized on every request, writes to ECR, the rest to next. The
// gateway's own tests cover its health endpoints in front of a
// Passthrough.
func newGateway(t *testing.T, upstream string, rt http.RoundTripper, next http.Handler, opts ...PassthroughOption) *httptest.Server {
	t.Helper()
	if rt == nil {
		rt = http.DefaultTransport
	}
	if next == nil {
		next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return // the API version check: 200
			}
			wire.WriteError(w, http.StatusNotFound, "NOT_FOUND", "not here")
		})
	}
	p, err := NewPassthrough(upstream, rt, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Sanitize(r)
		if !p.ServeWrite(w, r) {
			next.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// reply is an answer read whole.
type reply struct {
	StatusCode int
	Status     string
	Header     http.Header
}

func do(t *testing.T, method, url string, body io.Reader, header map[string]string) (reply, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Status, resp.Header}, string(b)
}

var zeros = strings.Repeat("0", 64)

func TestMatch(t *testing.T) {
	t.Parallel()
	p, err := NewPassthrough("https://123456789012.dkr.ecr.eu-west-1.amazonaws.com", http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		want         write // zero: not a write, left to distribution
	}{
		{"POST", "/v2/team/app/blobs/uploads/", write{uploadStart, "team/app", ""}},
		{"POST", "/v2/app/blobs/uploads", write{uploadStart, "app", ""}},
		{"GET", "/v2/team/app/blobs/uploads/", write{}},
		{"GET", "/v2/team/app/blobs/uploads/a1-b2", write{uploadStatus, "team/app", "a1-b2"}},
		{"PATCH", "/v2/team/app/blobs/uploads/a1-b2", write{uploadChunk, "team/app", "a1-b2"}},
		{"PUT", "/v2/team/app/blobs/uploads/a1-b2", write{uploadComplete, "team/app", "a1-b2"}},
		{"DELETE", "/v2/team/app/blobs/uploads/a1-b2", write{uploadCancel, "team/app", "a1-b2"}},
		{"PUT", "/v2/team/app/manifests/1.0", write{manifestPut, "team/app", "1.0"}},
		{"PUT", "/v2/team/app/manifests/sha256:" + zeros, write{manifestPut, "team/app", "sha256:" + zeros}},
		{"DELETE", "/v2/team/app/manifests/sha256:" + zeros, write{manifestDelete, "team/app", "sha256:" + zeros}},
		{"DELETE", "/v2/team/app/blobs/sha256:" + zeros, write{blobDelete, "team/app", "sha256:" + zeros}},
		{"GET", "/v2/team/app/manifests/1.0", write{}},
		{"HEAD", "/v2/team/app/manifests/1.0", write{}},
		{"GET", "/v2/team/app/blobs/sha256:" + zeros, write{}},
		{"HEAD", "/v2/team/app/blobs/sha256:" + zeros, write{}},
		{"POST", "/v2/team/app/manifests/1.0", write{}},
		{"GET", "/v2/", write{}},
		{"GET", "/v2/_catalog", write{}},
		{"GET", "/v2/team/app/tags/list", write{}},
		{"POST", "/v2/../etc/blobs/uploads/", write{}},
		{"POST", "/v2/team/../../x/blobs/uploads/", write{}},
		{"POST", "/v2/Team/App/blobs/uploads/", write{}},
		{"PUT", "/v2/team/app/manifests/a/../../b", write{}},
		{"PATCH", "/v2/team/app/blobs/uploads/a/b", write{}},
		{"PUT", "/v2/team/app/blobs/uploads/x?digest=../../../y", write{uploadComplete, "team/app", "x"}},
		{"POST", "/v3/team/app/blobs/uploads/", write{}},
		{"POST", "/team/app/blobs/uploads/", write{}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			got, ok := p.match(httptest.NewRequest(tt.method, tt.path, nil))
			if ok != (tt.want != write{}) {
				t.Fatalf("match = %+v, %t; want %+v", got, ok, tt.want)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(write{})); diff != "" {
				t.Errorf("match (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPassthroughForwarding: writes reach the configured registry only,
// on the validated path, without the client's credentials or forwarding
// headers; reads reach distribution.
func TestPassthroughForwarding(t *testing.T) {
	t.Parallel()
	ecr := newScripted(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	var reads []string
	var mu sync.Mutex
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reads = append(reads, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	gw := newGateway(t, ecr.URL, nil, app)

	headers := map[string]string{
		"Authorization":     "Basic Y2xpZW50OnNlY3JldA==",
		"Cookie":            "session=1",
		"X-Forwarded-Host":  "evil.example",
		"X-Forwarded-Proto": "https",
		"Forwarded":         "host=evil.example",
	}
	do(t, "POST", gw.URL+"/v2/team/app/blobs/uploads/?mount=sha256:"+zeros+"&from=team/base", nil, headers)
	do(t, "DELETE", gw.URL+"/v2/team/app/manifests/sha256:"+zeros, nil, headers)
	do(t, "GET", gw.URL+"/v2/team/app/manifests/1.0", nil, headers)
	do(t, "HEAD", gw.URL+"/v2/team/app/blobs/sha256:"+zeros, nil, headers)

	// An absolute-form request target names another host: ignored.
	req, err := http.NewRequestWithContext(t.Context(), "POST", gw.URL+"/v2/team/app/blobs/uploads/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = "http://evil.example/v2/team/app/blobs/uploads/"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()

	got := ecr.requests()
	var lines []string
	for _, r := range got {
		lines = append(lines, r.method+" "+r.path+" "+r.query)
		for h := range headers {
			if v := r.header.Get(h); v != "" {
				t.Errorf("%s %s reached ECR with %s: %q", r.method, r.path, h, v)
			}
		}
	}
	want := []string{
		"POST /v2/team/app/blobs/uploads/ mount=sha256:" + zeros + "&from=team/base",
		"DELETE /v2/team/app/manifests/sha256:" + zeros + " ",
		"POST /v2/team/app/blobs/uploads/ ",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("requests at ECR (-want +got):\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"GET /v2/team/app/manifests/1.0", "HEAD /v2/team/app/blobs/sha256:" + zeros}, reads); diff != "" {
		t.Errorf("requests at distribution (-want +got):\n%s", diff)
	}
}

// TestPassthroughECRQuirks runs uploads against the emulator: its 201 to
// PATCH reaches the client as 202, Locations lead back to the gateway, a
// too-small part is refused with ECR's message, and a mount ECR ignores
// starts a normal upload.
func TestPassthroughECRQuirks(t *testing.T) {
	t.Parallel()
	emu := ecrtest.New(t)
	user, pw, err := emu.Token()
	if err != nil {
		t.Fatal(err)
	}
	gw := newGateway(t, emu.RegistryURL(), basicTransport{user, pw}, nil)

	resp, body := do(t, "POST", gw.URL+"/v2/team/app/blobs/uploads/?mount=sha256:"+zeros+"&from=team/base", nil, nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, gw.URL+"/v2/team/app/blobs/uploads/") {
		t.Fatalf("mount ECR ignores: %s %q %s, want 202 with a Location on the gateway", resp.Status, loc, body)
	}
	resp, body = do(t, "PATCH", loc, strings.NewReader("small"), map[string]string{"Content-Range": "0-4"})
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-4" {
		t.Fatalf("PATCH: %s Range %q %s, want 202 Range 0-4", resp.Status, resp.Header.Get("Range"), body)
	}
	loc = resp.Header.Get("Location")
	if !strings.HasPrefix(loc, gw.URL+"/v2/team/app/blobs/uploads/") {
		t.Errorf("PATCH Location %q does not lead back to the gateway", loc)
	}
	resp, body = do(t, "PATCH", loc, strings.NewReader("more"), map[string]string{"Content-Range": "5-8"})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "5MB") {
		t.Errorf("PATCH after a small part: %s %s, want ECR's 400", resp.Status, body)
	}
}

// TestPassthroughStreams: the chunk reaches ECR while the client is still
// sending it: nothing buffers an upload body.
func TestPassthroughStreams(t *testing.T) {
	t.Parallel()
	firstBytes := make(chan struct{})
	ecr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadFull(r.Body, make([]byte, 64<<10)); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		close(firstBytes)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(ecr.Close)
	gw := newGateway(t, ecr.URL, nil, nil)

	pr, pw := io.Pipe()
	go func() {
		if _, err := pw.Write(make([]byte, 64<<10)); err != nil {
			return
		}
		select { // the rest only once ECR has the start
		case <-firstBytes:
			_, _ = pw.Write(make([]byte, 1<<20))
			_ = pw.Close()
		case <-t.Context().Done():
			_ = pw.CloseWithError(t.Context().Err())
		}
	}()
	resp, body := do(t, "PATCH", gw.URL+"/v2/team/app/blobs/uploads/abc", pr, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("streamed PATCH: %s %s, want 202", resp.Status, body)
	}
}

// TestPassthroughTokenRefused covers ECR refusing the proxy's token on a
// chunk, which cannot be replayed.
func TestPassthroughTokenRefused(t *testing.T) {
	t.Parallel()
	const expired = `{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}`
	const iamDenied = `{"errors":[{"code":"DENIED","message":"User: arn:aws:iam::1:user/x is not authorized to perform: ecr:UploadLayerPart"}]}`
	tests := []struct {
		name       string
		chunk      string // ECR's answer to the PATCH
		status     int    // ECR's answer to the status probe, 0: none expected
		wantStatus int
		wantBody   string
	}{
		{"renewed", expired, http.StatusNoContent, http.StatusServiceUnavailable, "renewed"},
		{"still refused", expired, http.StatusForbidden, http.StatusForbidden, "expired"},
		{"IAM denial", iamDenied, 0, http.StatusForbidden, "not authorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ecr := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if r.Method == http.MethodPatch {
					w.WriteHeader(http.StatusForbidden)
					_, _ = io.WriteString(w, tt.chunk)
					return
				}
				w.WriteHeader(tt.status)
				if tt.status == http.StatusForbidden {
					_, _ = io.WriteString(w, expired)
				}
			})
			gw := newGateway(t, ecr.URL, nil, nil)
			resp, body := do(t, "PATCH", gw.URL+"/v2/team/app/blobs/uploads/abc?_state=s", strings.NewReader("data"), nil)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Errorf("client got %s %s, want %d with %q", resp.Status, body, tt.wantStatus, tt.wantBody)
			}
			var probes []string
			for _, r := range ecr.requests() {
				if r.method == http.MethodGet {
					probes = append(probes, r.path+"?"+r.query)
				}
			}
			var want []string
			if tt.status != 0 {
				want = []string{"/v2/team/app/blobs/uploads/abc?_state=s"}
			}
			if diff := cmp.Diff(want, probes); diff != "" {
				t.Errorf("status probes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPassthroughErrors(t *testing.T) {
	t.Parallel()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	gw := newGateway(t, down.URL, nil, nil)
	resp, body := do(t, "POST", gw.URL+"/v2/team/app/blobs/uploads/", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "UNAVAILABLE") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("ECR down: %s %s, want 503 UNAVAILABLE revealing nothing", resp.Status, body)
	}

	ecr := newScripted(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	gw = newGateway(t, ecr.URL, nil, nil)
	resp, body = do(t, "PUT", gw.URL+"/v2/team/app/manifests/1", strings.NewReader(strings.Repeat("x", wire.MaxManifestSize+1)), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || len(ecr.requests()) != 0 {
		t.Errorf("manifest over 4 MiB: %s %s, %d requests at ECR; want 413 and none", resp.Status, body, len(ecr.requests()))
	}
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) != 1 {
		t.Errorf("error body %q: %v", body, err)
	}

	// ECR's own challenge is not passed on: it is for the proxy.
	ecr = newScripted(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Www-Authenticate", `Basic realm="https://ecr/"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	gw = newGateway(t, ecr.URL, nil, nil)
	resp, _ = do(t, "DELETE", gw.URL+"/v2/team/app/manifests/1", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Www-Authenticate") != "" {
		t.Errorf("ECR 401: %s with challenge %q, want 401 without", resp.Status, resp.Header.Get("Www-Authenticate"))
	}
}

func TestNewPassthroughValidates(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://x", "https://x/path", "x"} {
		if _, err := NewPassthrough(u, http.DefaultTransport); err == nil {
			t.Errorf("NewPassthrough(%q) succeeded", u)
		}
	}
	if _, err := NewPassthrough("https://x", nil); err == nil {
		t.Error("NewPassthrough with a nil transport succeeded")
	}
}
