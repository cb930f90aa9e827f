package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/handlers"
	registrymiddleware "github.com/distribution/distribution/v3/registry/middleware/registry"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/wire"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// localApp is distribution's app on an lrufilesystem cache, as the
// command runs it, with the driver and namespace its registry middleware
// hands over, and a count of the requests that reached the app.
type localApp struct {
	app   http.Handler
	calls atomic.Int64
	files BlobFiles
	ns    distribution.Namespace
}

// appSeq numbers the registry middlewares the tests register: a name can
// be registered once per process, and -count runs a test again.
var appSeq atomic.Int64

func newLocalApp(t *testing.T) *localApp {
	t.Helper()
	la := &localApp{}
	mw := fmt.Sprintf("blobfiles-test-%s-%d", t.Name(), appSeq.Add(1)) // registered once per process
	err := registrymiddleware.Register(mw, func(_ context.Context, ns distribution.Namespace, d storagedriver.StorageDriver, _ map[string]any) (distribution.Namespace, error) {
		la.files, _ = d.(BlobFiles)
		la.ns = ns
		return ns, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &configuration.Configuration{
		Storage:    configuration.Storage{lrufs.DriverName: {"rootdirectory": t.TempDir()}},
		Middleware: map[string][]configuration.Middleware{"registry": {{Name: mw}}},
	}
	cfg.HTTP.Headers = http.Header{"X-Content-Type-Options": {"nosniff"}}
	cfg.Log.AccessLog.Disabled = true
	app := handlers.NewApp(t.Context(), cfg)
	if la.files == nil {
		t.Fatal("the registry middleware got no lrufilesystem driver")
	}
	la.app = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		la.calls.Add(1)
		app.ServeHTTP(w, r)
	})
	return la
}

// put stores a random blob in repo and returns its digest and bytes.
func (la *localApp) put(t *testing.T, repo string, size int) (digest.Digest, []byte) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	named, err := reference.WithName(repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := la.ns.Repository(t.Context(), named)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := r.Blobs(t.Context()).Put(t.Context(), wire.OctetStream, data)
	if err != nil {
		t.Fatal(err)
	}
	return desc.Digest, data
}

// TestBlobFilesAnswerAsTheApp: a cached blob served from its file gets
// the answer distribution's app gives, header for header and byte for
// byte, for GET, HEAD, Range and conditional requests, without reaching
// the app; what the repository does not link goes to the app.
func TestBlobFilesAnswerAsTheApp(t *testing.T) {
	la := newLocalApp(t)
	fast := httptest.NewServer(New(la.app, WithBlobFiles(la.files, nil, http.Header{"X-Content-Type-Options": {"nosniff"}})))
	defer fast.Close()
	plain := httptest.NewServer(New(la.app))
	defer plain.Close()
	dgst, data := la.put(t, "team/app", 300<<10)

	// get answers the status, the header and the body, read and closed.
	type answer struct {
		StatusCode int
		Header     http.Header
	}
	get := func(base, method, path string, header ...string) (answer, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return answer{resp.StatusCode, resp.Header}, b
	}
	blob := "/v2/team/app/blobs/" + dgst.String()
	for _, tt := range []struct {
		name, method string
		header       []string
		wantStatus   int
		wantBody     []byte
	}{
		{"GET", http.MethodGet, nil, http.StatusOK, data},
		{"HEAD", http.MethodHead, nil, http.StatusOK, nil},
		{"Range", http.MethodGet, []string{"Range", "bytes=1000-1999"}, http.StatusPartialContent, data[1000:2000]},
		{"Range past the end", http.MethodGet, []string{"Range", "bytes=999999999-"}, http.StatusRequestedRangeNotSatisfiable, nil},
		{"If-None-Match", http.MethodGet, []string{"If-None-Match", `"` + dgst.String() + `"`}, http.StatusNotModified, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := la.calls.Load()
			got, gotBody := get(fast.URL, tt.method, blob, tt.header...)
			if n := la.calls.Load() - before; n != 0 {
				t.Errorf("the cached blob reached the app %d times", n)
			}
			want, wantBody := get(plain.URL, tt.method, blob, tt.header...)
			if got.StatusCode != tt.wantStatus || want.StatusCode != tt.wantStatus {
				t.Errorf("status: from the file %d, from the app %d, want %d", got.StatusCode, want.StatusCode, tt.wantStatus)
			}
			if tt.wantBody != nil && !bytes.Equal(gotBody, tt.wantBody) {
				t.Errorf("body from the file: %d bytes, want %d", len(gotBody), len(tt.wantBody))
			}
			if !bytes.Equal(gotBody, wantBody) {
				t.Errorf("body from the file (%d bytes) differs from the app's (%d bytes)", len(gotBody), len(wantBody))
			}
			got.Header.Del("Date")
			want.Header.Del("Date")
			for k := range want.Header {
				if got.Header.Get(k) != want.Header.Get(k) {
					t.Errorf("header %s: from the file %q, from the app %q", k, got.Header.Get(k), want.Header.Get(k))
				}
			}
			for k := range got.Header {
				if want.Header.Get(k) == "" {
					t.Errorf("header %s only from the file: %q", k, got.Header.Get(k))
				}
			}
		})
	}

	// Another repository does not link the blob: the app answers.
	before := la.calls.Load()
	resp, _ := get(fast.URL, http.MethodGet, "/v2/team/other/blobs/"+dgst.String())
	if la.calls.Load() == before || resp.StatusCode != http.StatusNotFound {
		t.Errorf("blob of another repository: %d, app reached %t; want the app's 404", resp.StatusCode, la.calls.Load() != before)
	}
	// Not cached at all: the app answers.
	before = la.calls.Load()
	resp, _ = get(fast.URL, http.MethodGet, "/v2/team/app/blobs/"+digest.FromString("absent").String())
	if la.calls.Load() == before || resp.StatusCode != http.StatusNotFound {
		t.Errorf("uncached blob: %d, app reached %t; want the app's 404", resp.StatusCode, la.calls.Load() != before)
	}
}

// TestBlobFilesKeepClientAuth: with client authentication, a request the
// access controller does not authorize for pull is left to the app
// (which challenges it); an authorized one is served from the file.
func TestBlobFilesKeepClientAuth(t *testing.T) {
	la := newLocalApp(t)
	dgst, data := la.put(t, "team/app", 10<<10)
	for _, tt := range []struct {
		name     string
		ac       *recordingController
		fromFile bool
	}{
		{"refused", &recordingController{err: errors.New("denied")}, false},
		{"authorized", &recordingController{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(New(la.app, WithBlobFiles(la.files, tt.ac, nil)))
			defer srv.Close()
			before := la.calls.Load()
			resp, err := http.Get(srv.URL + "/v2/team/app/blobs/" + dgst.String()) //nolint:noctx // a test request
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if fromFile := la.calls.Load() == before; fromFile != tt.fromFile {
				t.Errorf("served from the file = %t, want %t", fromFile, tt.fromFile)
			}
			if tt.fromFile && !bytes.Equal(b, data) {
				t.Errorf("body: %d bytes, want %d", len(b), len(data))
			}
			if len(tt.ac.got) != 1 || len(tt.ac.got[0]) != 1 || tt.ac.got[0][0].Action != "pull" || tt.ac.got[0][0].Name != "team/app" {
				t.Errorf("access asked: %+v, want pull on team/app", tt.ac.got)
			}
		})
	}
}

// recordingController grants or refuses, and records what was asked.
type recordingController struct {
	err error
	mu  sync.Mutex
	got [][]distauth.Access
}

func (c *recordingController) Authorized(_ *http.Request, access ...distauth.Access) (*distauth.Grant, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, access)
	if c.err != nil {
		return nil, c.err
	}
	return &distauth.Grant{User: distauth.UserInfo{Name: "u"}}, nil
}
