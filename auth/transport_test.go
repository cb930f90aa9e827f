package auth

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// fakeRegistry is ECR's registry at its wire protocol: it accepts the
// tokens in valid (Basic base64("AWS:"+pw)) and answers refusals as
// scripted, and redirects blob GETs to s3.
type fakeRegistry struct {
	mu      sync.Mutex
	valid   map[string]bool
	refuse  func(r *http.Request) (int, string) // status 0: accept
	bodies  []string
	s3URL   string
	srv     *httptest.Server
	s3Auths atomic.Int32
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{valid: map[string]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	// S3 on another loopback address, as a different host.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.2: %v", err)
	}
	s3 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			f.s3Auths.Add(1)
			http.Error(w, "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>", http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "blob bytes")
	}))
	s3.Listener = ln
	s3.Start()
	t.Cleanup(s3.Close)
	f.s3URL = s3.URL
	return f
}

func (f *fakeRegistry) accept(tok Token) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.valid[tok.BasicAuth()] = true
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	ok := f.valid[r.Header.Get("Authorization")]
	refuse := f.refuse
	b, _ := io.ReadAll(r.Body)
	f.bodies = append(f.bodies, string(b))
	f.mu.Unlock()
	if refuse != nil {
		if status, body := refuse(r); status != 0 {
			http.Error(w, body, status)
			return
		}
	}
	if !ok {
		w.Header().Set("Www-Authenticate", `Basic realm="https://`+r.Host+`/",service="ecr.amazonaws.com"`)
		http.Error(w, "Not Authorized", http.StatusUnauthorized)
		return
	}
	if strings.Contains(r.URL.Path, "/blobs/") {
		http.Redirect(w, r, f.s3URL+"/layer?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc", http.StatusTemporaryRedirect)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func newTransport(t *testing.T, api ECRAPI, reg *fakeRegistry) (*Transport, *TokenSource) {
	t.Helper()
	s := newSource(t, api, WithMintObserver(func(e MintEvent) {
		if e.Err == nil {
			reg.accept(e.Token)
		}
	}))
	tr, err := NewTransport(reg.srv.URL, s)
	if err != nil {
		t.Fatalf("NewTransport: %v", err)
	}
	return tr, s
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b)
}

func TestTransportAuthenticatesRegistryAndNotS3(t *testing.T) {
	reg := newFakeRegistry(t)
	api := &fakeECR{}
	tr, _ := newTransport(t, api, reg)
	c := &http.Client{Transport: tr}
	if code, _ := get(t, c, reg.srv.URL+"/v2/"); code != http.StatusUnauthorized {
		t.Errorf("anonymous GET /v2/ = %d, want ECR's 401 challenge", code)
	}
	if code, body := get(t, c, reg.srv.URL+"/v2/team/app/manifests/1"); code != 200 || body != "ok" {
		t.Errorf("GET manifest = %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, c, reg.srv.URL+"/v2/team/app/blobs/sha256:aa"); code != 200 || body != "blob bytes" {
		t.Errorf("blob GET through the S3 redirect = %d %q, want 200 blob bytes", code, body)
	}
	if n := reg.s3Auths.Load(); n != 0 {
		t.Errorf("S3 received Authorization %d times", n)
	}
	if n := api.Calls(); n != 1 {
		t.Errorf("mints = %d, want 1", n)
	}
}

func TestTransportStripsAuthorizationFromPresignedURLs(t *testing.T) {
	reg := newFakeRegistry(t)
	tr, _ := newTransport(t, &fakeECR{}, reg)
	req, err := http.NewRequest(http.MethodGet, reg.s3URL+"/layer?X-Amz-Signature=abc", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Basic c29tZQ==")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	drain(resp)
	if resp.StatusCode != 200 || reg.s3Auths.Load() != 0 {
		t.Errorf("presigned GET = %d with %d Authorization headers at S3, want 200 and none", resp.StatusCode, reg.s3Auths.Load())
	}
	if req.Header.Get("Authorization") == "" {
		t.Error("RoundTrip modified the caller's request")
	}
}

func TestTransportRemintsOnceOnRefusal(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantRetry bool
	}{
		{"401", http.StatusUnauthorized, "Not Authorized", true},
		{"403 expired", http.StatusForbidden, `{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}`, true},
		{"403 IAM denial", http.StatusForbidden, `{"errors":[{"code":"DENIED","message":"User: arn:aws:iam::1:user/x is not authorized to perform: ecr:BatchGetImage"}]}`, false},
		{"404", http.StatusNotFound, "not found", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newFakeRegistry(t)
			var refused atomic.Int32
			reg.refuse = func(r *http.Request) (int, string) {
				if refused.Add(1) == 1 {
					return tt.status, tt.body
				}
				return 0, ""
			}
			api := &fakeECR{}
			tr, _ := newTransport(t, api, reg)
			code, body := get(t, &http.Client{Transport: tr}, reg.srv.URL+"/v2/team/app/manifests/1")
			wantCode, wantMints := tt.status, 1
			if tt.wantRetry {
				wantCode, wantMints = 200, 2
			}
			if code != wantCode {
				t.Errorf("status = %d (%q), want %d", code, body, wantCode)
			}
			if !tt.wantRetry && strings.TrimSpace(body) != tt.body {
				t.Errorf("body = %q, want ECR's answer passed through", body)
			}
			if n := api.Calls(); n != wantMints {
				t.Errorf("mints = %d, want %d", n, wantMints)
			}
		})
	}
}

func TestTransportReplaysBodies(t *testing.T) {
	reg := newFakeRegistry(t)
	var n atomic.Int32
	reg.refuse = func(*http.Request) (int, string) {
		if n.Add(1) == 1 {
			return http.StatusUnauthorized, "Not Authorized"
		}
		return 0, ""
	}
	api := &fakeECR{}
	tr, _ := newTransport(t, api, reg)
	req, err := http.NewRequest(http.MethodPut, reg.srv.URL+"/v2/team/app/manifests/1", bytes.NewReader([]byte("manifest")))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	drain(resp)
	if resp.StatusCode != 200 {
		t.Errorf("status = %d, want 200 after replay", resp.StatusCode)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.bodies) != 2 || reg.bodies[1] != "manifest" {
		t.Errorf("bodies received = %q, want the body twice", reg.bodies)
	}
}

func TestTransportDoesNotReplayStreams(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.refuse = func(*http.Request) (int, string) { return http.StatusUnauthorized, "Not Authorized" }
	api := &fakeECR{}
	tr, _ := newTransport(t, api, reg)
	req, err := http.NewRequest(http.MethodPatch, reg.srv.URL+"/v2/team/app/blobs/uploads/u", io.NopCloser(strings.NewReader("chunk")))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	drain(resp)
	if resp.StatusCode != http.StatusUnauthorized || api.Calls() != 1 {
		t.Errorf("status = %d after %d mints, want the 401 and no re-mint for a body that cannot be replayed", resp.StatusCode, api.Calls())
	}
	// The refused token was dropped: the caller's retry gets a new one.
	reg.refuse = nil
	if code, _ := get(t, &http.Client{Transport: tr}, reg.srv.URL+"/v2/team/app/tags/list"); code != 200 || api.Calls() != 2 {
		t.Errorf("retry after the refusal = %d after %d mints, want 200 with a second token", code, api.Calls())
	}
}

func TestTransportFailsWithoutToken(t *testing.T) {
	reg := newFakeRegistry(t)
	denied := errors.New("AccessDeniedException: not allowed")
	tr, _ := newTransport(t, &fakeECR{fail: func(int) error { return denied }}, reg)
	resp, err := (&http.Client{Transport: tr}).Get(reg.srv.URL + "/v2/team/app/tags/list")
	if err == nil {
		drain(resp)
	}
	if !errors.Is(err, denied) {
		t.Errorf("error = %v, want it to wrap the mint error", err)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.bodies) != 0 {
		t.Errorf("%d requests reached the registry without a token", len(reg.bodies))
	}
}

func TestTransportConcurrentRefusalsMintOnce(t *testing.T) {
	reg := newFakeRegistry(t)
	api := &fakeECR{}
	tr, s := newTransport(t, api, reg)
	stale, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	reg.mu.Lock()
	delete(reg.valid, stale.BasicAuth()) // ECR revokes it
	reg.mu.Unlock()
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if code, _ := get(t, c, reg.srv.URL+"/v2/team/app/manifests/1"); code != 200 {
				t.Errorf("status = %d, want 200", code)
			}
		})
	}
	wg.Wait()
	if n := api.Calls(); n != 2 {
		t.Errorf("mints = %d, want 2 (the first and one re-mint)", n)
	}
}

func TestNewTransportRejectsBadURLs(t *testing.T) {
	t.Parallel()
	s, _ := NewTokenSource(&fakeECR{})
	for _, u := range []string{"", "ftp://x", "https://", "::"} {
		if _, err := NewTransport(u, s); err == nil {
			t.Errorf("NewTransport(%q) succeeded", u)
		}
	}
}

// TestTransportRemintsOnHEADRefusal: a HEAD has no body to say why ECR
// refused it, so a 401 or 403 to a HEAD is taken as a refusal of the
// token: the Transport mints once and replays the HEAD, as it does for a
// GET whose body says the token expired. Real emulator, SDK and loopback.
func TestTransportRemintsOnHEADRefusal(t *testing.T) {
	for _, tt := range []struct {
		name   string
		refuse func(*ecrtest.Emulator)
	}{
		{"expired (403, no body)", (*ecrtest.Emulator).ExpireTokens},
		{"revoked (401)", (*ecrtest.Emulator).RevokeTokens},
	} {
		t.Run(tt.name, func(t *testing.T) {
			emu := newEmulator(t)
			dgst := seedBlob(t, emu, "team/app:1")
			e := newEmulated(t.Context(), t, emu, nil)
			if code, _ := e.do(t.Context(), t, http.MethodHead, "/v2/team/app/blobs/"+dgst); code != http.StatusOK {
				t.Fatalf("HEAD with a fresh token = %d, want 200", code)
			}
			tt.refuse(emu)
			if code, _ := e.do(t.Context(), t, http.MethodHead, "/v2/team/app/blobs/"+dgst); code != http.StatusOK {
				t.Errorf("HEAD after ECR refused the token = %d, want 200 after one re-mint", code)
			}
			if code, _ := e.do(t.Context(), t, http.MethodHead, "/v2/team/app/blobs/"+dgst); code != http.StatusOK {
				t.Errorf("HEAD with the new token = %d, want 200", code)
			}
			if n := e.mints(); n != 2 {
				t.Errorf("mints = %d, want 2 (the first and one re-mint)", n)
			}
		})
	}
}

func TestRefusedTokenOnHEAD(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		method string
		status int
		want   bool
	}{
		{http.MethodHead, http.StatusForbidden, true},
		{http.MethodHead, http.StatusUnauthorized, true},
		{http.MethodHead, http.StatusNotFound, false},
		{http.MethodGet, http.StatusForbidden, false}, // a body without "expired": an IAM denial
	} {
		resp := &http.Response{StatusCode: tt.status, Body: http.NoBody, Request: &http.Request{Method: tt.method}}
		if got := RefusedToken(resp); got != tt.want {
			t.Errorf("RefusedToken(%s answered %d) = %t, want %t", tt.method, tt.status, got, tt.want)
		}
	}
}
