package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestUpstreamKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		want string
	}{
		{"https://r.example/v2/", upstreamPing},
		{"https://r.example/v2", upstreamPing},
		{"https://r.example/v2/team/app/manifests/1.0", upstreamManifest},
		{"https://r.example/v2/app/manifests/sha256:0123abcd", upstreamManifest},
		{"https://r.example/v2/team/app/blobs/sha256:0123abcd", upstreamBlob},
		{"https://r.example/v2/team/app/tags/list?n=100&last=1.0", upstreamTags},
		{"https://r.example/v2/team/app/blobs/uploads/", upstreamUpload},
		{"https://r.example/v2/team/app/blobs/uploads/3f1e-uuid?digest=sha256:00", upstreamUpload},
		// Repository names that look like routes do not fool it.
		{"https://r.example/v2/team/blobs/manifests/latest", upstreamManifest},
		{"https://r.example/v2/team/manifests/blobs/sha256:00", upstreamBlob},
		{"https://r.example/v2/blobs/uploads/blobs/sha256:00", upstreamBlob},
		{"https://r.example/v2/x/blobs/uploads/manifests/1", upstreamManifest},
		// S3, by presigned query or by host.
		{"https://prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com/a/b?X-Amz-Signature=abc", upstreamS3},
		{"http://127.0.0.1:4567/prod-eu-west-1-starport-layer-bucket/123/team/app/sha256:00?X-Amz-Credential=x", upstreamS3},
		{"https://s3.us-east-1.amazonaws.com/bucket/key", upstreamS3},
		{"https://bucket.s3-us-west-2.amazonaws.com/key", upstreamS3},
		// Everything else.
		{"https://r.example/v2/_catalog", upstreamOther},
		{"https://r.example/v2/team/app/tags/other", upstreamOther},
		{"https://r.example/v2/manifests/latest", upstreamOther},
		{"https://r.example/v2//manifests/latest", upstreamOther},
		{"https://r.example/v2/team/app/manifests/", upstreamOther},
		{"https://r.example/v2/team/app/blobs/", upstreamOther},
		{"https://r.example/v2/team/app/blobs/nodigest", upstreamOther},
		{"https://r.example/healthz", upstreamOther},
		{"https://r.example/", upstreamOther},
		{"https://example.com/s3/key", upstreamOther},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got := upstreamKind(u); got != tc.want {
				t.Errorf("upstreamKind(%s) = %q, want %q", tc.url, got, tc.want)
			}
		})
	}
}

func TestMethodAndCodeLabels(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"": "GET", "GET": "GET", "HEAD": "HEAD", "PUT": "PUT", "POST": "POST", "PATCH": "PATCH",
		"DELETE": "DELETE", "OPTIONS": "other", "get": "other", "BREW": "other",
	} {
		if got := methodLabel(in); got != want {
			t.Errorf("methodLabel(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int]string{200: "200", 307: "307", 599: "599", 99: "other", 600: "other", 0: "other", -1: "other"} {
		if got := codeLabel(in); got != want {
			t.Errorf("codeLabel(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestInstrumentTransport(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.Header().Set("Www-Authenticate", `Basic realm="x"`)
			w.WriteHeader(http.StatusUnauthorized)
		case strings.Contains(r.URL.Path, "/blobs/"):
			w.Header().Set("Location", "/bucket/key?X-Amz-Signature=sig")
			w.WriteHeader(http.StatusTemporaryRedirect)
		case r.URL.Path == "/bucket/key":
			_, _ = io.WriteString(w, strings.Repeat("b", 1000))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	// The clock advances 250ms on each reading: every request "takes" 250ms.
	r, reg := testRecorder(t, 250*time.Millisecond)
	client := &http.Client{Transport: r.instrument("shared", srv.Client().Transport)}
	for _, path := range []string{"/v2/", "/v2/team/app/blobs/sha256:00", "/v2/team/app/manifests/nope"} {
		resp, err := client.Get(srv.URL + path) // the blob follows its redirect to "S3"
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		_ = resp.Body.Close()
	}

	want := `# HELP ecrproxy_upstream_requests_total HTTP requests sent to ECR and to the S3 URLs it redirects to, by registry, kind, method and status code ("error" when no response came).
# TYPE ecrproxy_upstream_requests_total counter
ecrproxy_upstream_requests_total{code="200",kind="s3",method="GET",registry="shared"} 1
ecrproxy_upstream_requests_total{code="307",kind="blob",method="GET",registry="shared"} 1
ecrproxy_upstream_requests_total{code="401",kind="ping",method="GET",registry="shared"} 1
ecrproxy_upstream_requests_total{code="404",kind="manifest",method="GET",registry="shared"} 1
`
	if diff := cmp.Diff(want, exposition(t, reg, "ecrproxy_upstream_requests_total")); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	s3Bytes, _ := value(t, reg, "ecrproxy_upstream_response_bytes_total", "kind", "s3", "registry", "shared")
	if s3Bytes != 1000 {
		t.Errorf("s3 response bytes = %v, want 1000", s3Bytes)
	}
	got := exposition(t, reg, "ecrproxy_upstream_request_duration_seconds")
	for _, line := range []string{
		`ecrproxy_upstream_request_duration_seconds_bucket{kind="s3",method="GET",registry="shared",le="0.1"} 0`,
		`ecrproxy_upstream_request_duration_seconds_bucket{kind="s3",method="GET",registry="shared",le="0.25"} 1`,
		`ecrproxy_upstream_request_duration_seconds_sum{kind="blob",method="GET",registry="shared"} 0.25`,
		`ecrproxy_upstream_request_duration_seconds_count{kind="ping",method="GET",registry="shared"} 1`,
	} {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("duration histogram lacks %q:\n%s", line, got)
		}
	}
}

// failingTransport answers every request with err.
type failingTransport struct{ err error }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

func TestInstrumentTransportError(t *testing.T) {
	t.Parallel()
	r, reg := testRecorder(t, time.Second)
	dialErr := errors.New("dial tcp 10.0.0.1:443: connect: connection refused")
	rt := r.instrument("shared", failingTransport{err: dialErr})

	req, err := http.NewRequest(http.MethodHead, "https://r.example/v2/team/app/manifests/1.0", nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := rt.RoundTrip(req)
	if resp != nil {
		_ = resp.Body.Close()
	}
	if !errors.Is(err, dialErr) {
		t.Errorf("RoundTrip error = %v, want the base transport's %v", err, dialErr)
	}
	if got, _ := value(t, reg, "ecrproxy_upstream_requests_total", "code", "error", "kind", "manifest", "method", "HEAD", "registry", "shared"); got != 1 {
		t.Errorf(`requests{code="error",kind="manifest",method="HEAD"} = %v, want 1`, got)
	}
	if got, _ := value(t, reg, "ecrproxy_upstream_request_duration_seconds", "kind", "manifest", "method", "HEAD", "registry", "shared"); got != 1 {
		t.Errorf("duration observations = %v, want 1", got)
	}
}
