package ecrtest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestChallenge(t *testing.T) {
	e := ecrtest.New(t)
	for _, tc := range []struct{ name, path, auth string }{
		{"no credentials on /v2/", "/v2/", ""},
		{"no credentials on a manifest", "/v2/team/app/manifests/latest", ""},
		{"unknown token", "/v2/", "Basic " + b64("AWS:not-a-token")},
		{"wrong user", "/v2/", "Basic " + b64("bob:x")},
		{"bearer", "/v2/", "Bearer x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, http.MethodGet, e.RegistryURL()+tc.path, tc.auth, nil)
			if r.status != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401", r.status)
			}
			want := `Basic realm="https://` + e.RegistryHost() + `/",service="ecr.amazonaws.com"`
			if got := r.header.Get("Www-Authenticate"); got != want {
				t.Errorf("Www-Authenticate = %q, want %q", got, want)
			}
			if got := r.header.Get("Docker-Distribution-Api-Version"); got != "registry/2.0" {
				t.Errorf("api version = %q", got)
			}
			if r.body != "Not Authorized\n" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("body %q, type %q", r.body, r.header.Get("Content-Type"))
			}
		})
	}
}

func b64(s string) string { return base64Std(s) }

// TestTokenExpiry checks expiry by the injected clock, ExpireTokens and
// RevokeTokens.
func TestTokenExpiry(t *testing.T) {
	clock := newFakeClock()
	e := ecrtest.New(t, ecrtest.WithClock(clock.Now), ecrtest.WithTokenLifetime(time.Hour))
	const expired = `{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}`
	check := func(t *testing.T, auth string, want int) {
		t.Helper()
		r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", auth, nil)
		if r.status != want {
			t.Fatalf("status = %d, want %d (%s)", r.status, want, r.body)
		}
		if want == http.StatusForbidden && r.body != expired {
			t.Errorf("body = %s, want %s", r.body, expired)
		}
	}
	t.Run("clock", func(t *testing.T) {
		auth := basic(t, e)
		check(t, auth, http.StatusOK)
		clock.Advance(59 * time.Minute)
		check(t, auth, http.StatusOK)
		clock.Advance(time.Minute)
		check(t, auth, http.StatusForbidden)
	})
	t.Run("SetTokenLifetime", func(t *testing.T) {
		e.SetTokenLifetime(time.Minute)
		auth := basic(t, e)
		clock.Advance(time.Minute)
		check(t, auth, http.StatusForbidden)
		e.SetTokenLifetime(time.Hour)
	})
	t.Run("ExpireTokens", func(t *testing.T) {
		auth := basic(t, e)
		e.ExpireTokens()
		check(t, auth, http.StatusForbidden)
		check(t, basic(t, e), http.StatusOK) // new tokens are fine
	})
	t.Run("RevokeTokens", func(t *testing.T) {
		auth := basic(t, e)
		e.RevokeTokens()
		check(t, auth, http.StatusUnauthorized)
	})
}

func remoteOpts(t *testing.T, e *ecrtest.Emulator) []remote.Option {
	t.Helper()
	user, pw, err := e.Token()
	if err != nil {
		t.Fatal(err)
	}
	return []remote.Option{remote.WithContext(t.Context()), remote.WithAuth(&authn.Basic{Username: user, Password: pw})}
}

// TestPushPull pushes an image (OCI and Docker) with ggcr through the ECR
// front (PATCH 201, auth) and pulls it back through the S3 redirect. S3 is
// announced as "localhost": ggcr refuses redirects to another private IP.
func TestPushPull(t *testing.T) {
	e := ecrtest.New(t, ecrtest.WithS3Addr("127.0.0.1:0"), ecrtest.WithS3URLHost("localhost"))
	for _, mt := range []types.MediaType{types.OCIManifestSchema1, types.DockerManifestSchema2} {
		t.Run(string(mt), func(t *testing.T) {
			img, err := ecrtest.RandomImage(2, 64<<10, mt)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(e.RegistryHost()+"/team/app:push", name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			opts := remoteOpts(t, e)
			e.ResetCounts()
			if err := remote.Write(ref, img, opts...); err != nil {
				t.Fatalf("push: %v", err)
			}
			if e.Count(ecrtest.KindUpload) == 0 || e.Count(ecrtest.KindManifestPUT) != 1 {
				t.Errorf("counts after push: %v", e.Counts())
			}
			got, err := remote.Image(ref, opts...)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if err := validate.Image(got); err != nil {
				t.Errorf("validate pulled image: %v", err)
			}
			want, _ := img.Digest()
			if d, _ := got.Digest(); d != want {
				t.Errorf("digest = %s, want %s", d, want)
			}
			if e.Count(ecrtest.KindS3GET) == 0 {
				t.Errorf("no S3 GET: counts %v", e.Counts())
			}
		})
	}
}

// seedOne seeds one image with one layer and returns its layer digest.
func seedOne(t *testing.T, e *ecrtest.Emulator, ref string, size int64) string {
	t.Helper()
	img, err := ecrtest.RandomImage(1, size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Seed(t.Context(), ref, img); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// TestBlobRedirect covers blob GET/HEAD and the S3 server's rules.
func TestBlobRedirect(t *testing.T) {
	clock := newFakeClock()
	e := ecrtest.New(t, ecrtest.WithClock(clock.Now))
	dgst := seedOne(t, e, "team/app:1", 100_000)
	auth := basic(t, e)
	blobURL := e.RegistryURL() + "/v2/team/app/blobs/" + dgst

	head := do(t, http.MethodHead, blobURL, auth, nil)
	if head.status != http.StatusOK || head.header.Get("Docker-Content-Digest") != dgst || head.header.Get("Content-Length") == "" {
		t.Errorf("HEAD = %d %v", head.status, head.header)
	}
	size, _ := strconv.Atoi(head.header.Get("Content-Length"))

	redirect := func(t *testing.T) *url.URL {
		t.Helper()
		r := do(t, http.MethodGet, blobURL, auth, nil)
		if r.status != http.StatusTemporaryRedirect {
			t.Fatalf("GET blob = %d, want 307", r.status)
		}
		loc, err := url.Parse(r.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		if loc.Hostname() != "127.0.0.2" || loc.Query().Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || loc.Query().Get("X-Amz-Signature") == "" {
			t.Errorf("Location = %s", loc)
		}
		return loc
	}

	t.Run("GET follows to S3", func(t *testing.T) {
		r := do(t, http.MethodGet, redirect(t).String(), "", nil)
		if r.status != http.StatusOK || len(r.body) != size {
			t.Errorf("S3 GET = %d, %d bytes, want 200, %d", r.status, len(r.body), size)
		}
	})
	t.Run("default client drops Authorization on redirect", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, blobURL, nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status = %d", resp.StatusCode)
		}
	})
	t.Run("Range", func(t *testing.T) {
		r := do(t, http.MethodGet, redirect(t).String(), "", nil, "Range", "bytes=10-19")
		if r.status != http.StatusPartialContent || len(r.body) != 10 {
			t.Errorf("ranged S3 GET = %d, %d bytes", r.status, len(r.body))
		}
	})
	t.Run("Authorization to S3", func(t *testing.T) {
		r := do(t, http.MethodGet, redirect(t).String(), auth, nil)
		if r.status != http.StatusBadRequest || !contains(r.body, "<Code>InvalidArgument</Code>") || !contains(r.body, "Only one auth mechanism allowed") {
			t.Errorf("S3 with Authorization = %d %s", r.status, r.body)
		}
	})
	t.Run("unknown signature", func(t *testing.T) {
		loc := redirect(t)
		q := loc.Query()
		q.Set("X-Amz-Signature", "00")
		loc.RawQuery = q.Encode()
		r := do(t, http.MethodGet, loc.String(), "", nil)
		if r.status != http.StatusForbidden || !contains(r.body, "AccessDenied") {
			t.Errorf("S3 with bad signature = %d %s", r.status, r.body)
		}
	})
	t.Run("expired URL", func(t *testing.T) {
		loc := redirect(t)
		clock.Advance(ecrtest.DefaultPresignExpiry)
		r := do(t, http.MethodGet, loc.String(), "", nil)
		if r.status != http.StatusForbidden || !contains(r.body, "Request has expired") {
			t.Errorf("expired S3 URL = %d %s", r.status, r.body)
		}
		loc = redirect(t)
		e.ExpirePresignedURLs()
		if r := do(t, http.MethodGet, loc.String(), "", nil); r.status != http.StatusForbidden {
			t.Errorf("after ExpirePresignedURLs = %d", r.status)
		}
	})
	t.Run("unknown blob", func(t *testing.T) {
		r := do(t, http.MethodGet, e.RegistryURL()+"/v2/team/app/blobs/sha256:"+strings.Repeat("0", 64), auth, nil)
		if r.status != http.StatusNotFound || !contains(r.body, "BLOB_UNKNOWN") {
			t.Errorf("unknown blob = %d %s", r.status, r.body)
		}
	})
}

func TestHEADRedirectAndManifestDigest(t *testing.T) {
	e := ecrtest.New(t, ecrtest.WithHEADRedirect(true), ecrtest.WithManifestDigestOnGET(false))
	dgst := seedOne(t, e, "team/app:1", 1000)
	auth := basic(t, e)
	if r := do(t, http.MethodHead, e.RegistryURL()+"/v2/team/app/blobs/"+dgst, auth, nil); r.status != http.StatusTemporaryRedirect {
		t.Errorf("HEAD blob = %d, want 307", r.status)
	}
	accept := string(types.OCIManifestSchema1)
	if r := do(t, http.MethodGet, e.RegistryURL()+"/v2/team/app/manifests/1", auth, nil, "Accept", accept); r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != "" {
		t.Errorf("manifest GET = %d, digest %q; want 200 without digest", r.status, r.header.Get("Docker-Content-Digest"))
	}
	if r := do(t, http.MethodHead, e.RegistryURL()+"/v2/team/app/manifests/1", auth, nil, "Accept", accept); r.header.Get("Docker-Content-Digest") == "" {
		t.Errorf("manifest HEAD lacks digest")
	}
}

// TestTagsPagination checks the page size without n, n and last, and Link.
func TestTagsPagination(t *testing.T) {
	e := ecrtest.New(t, ecrtest.WithTagsPageSize(50))
	if err := e.SeedTags(t.Context(), "team/many", 120); err != nil {
		t.Fatalf("SeedTags: %v", err)
	}
	auth := basic(t, e)
	e.ResetCounts()
	var all []string
	next := "/v2/team/many/tags/list"
	pages := 0
	for next != "" {
		r := do(t, http.MethodGet, e.RegistryURL()+next, auth, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", next, r.status, r.body)
		}
		var page struct{ Tags []string }
		if err := json.Unmarshal([]byte(r.body), &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Tags) > 50 {
			t.Errorf("page of %d tags, want <= 50", len(page.Tags))
		}
		all = append(all, page.Tags...)
		pages++
		next = ""
		if link := r.header.Get("Link"); link != "" {
			next = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
			if !strings.HasPrefix(next, "/v2/team/many/tags/list?") || !contains(next, "n=50") {
				t.Errorf("Link = %q", link)
			}
		}
	}
	if pages != 3 || len(all) != 120 || all[0] != ecrtest.SeedTagName(0) || all[119] != ecrtest.SeedTagName(119) {
		t.Errorf("got %d pages, %d tags (%v…), want 3 pages of 120", pages, len(all), all[:min(3, len(all))])
	}
	if got := e.Count(ecrtest.KindTagsList); got != pages {
		t.Errorf("tags-list count = %d, want %d", got, pages)
	}

	r := do(t, http.MethodGet, e.RegistryURL()+"/v2/team/many/tags/list?n=10&last="+ecrtest.SeedTagName(4), auth, nil)
	var page struct{ Tags []string }
	_ = json.Unmarshal([]byte(r.body), &page)
	if len(page.Tags) != 10 || page.Tags[0] != ecrtest.SeedTagName(5) || r.header.Get("Link") == "" {
		t.Errorf("n=10&last=4: %v, Link %q", page.Tags, r.header.Get("Link"))
	}
}

// TestUploadRules checks PATCH 201, the 5 MiB part rule and mounting.
func TestUploadRules(t *testing.T) {
	e := ecrtest.New(t)
	auth := basic(t, e)
	start := func(t *testing.T, query string) response {
		t.Helper()
		return do(t, http.MethodPost, e.RegistryURL()+"/v2/team/up/blobs/uploads/"+query, auth, nil)
	}
	patch := func(t *testing.T, loc string, n int) response {
		t.Helper()
		u, err := url.Parse(e.RegistryURL())
		if err != nil {
			t.Fatal(err)
		}
		l, err := u.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		return do(t, http.MethodPatch, l.String(), auth, bytes.NewReader(make([]byte, n)), "Content-Type", "application/octet-stream")
	}
	t.Run("small part then another part", func(t *testing.T) {
		s := start(t, "")
		if s.status != http.StatusAccepted {
			t.Fatalf("POST = %d", s.status)
		}
		p := patch(t, s.header.Get("Location"), 1000)
		if p.status != http.StatusCreated {
			t.Fatalf("PATCH = %d, want 201", p.status)
		}
		p2 := patch(t, p.header.Get("Location"), 1000)
		if p2.status != http.StatusBadRequest || !contains(p2.body, "BLOB_UPLOAD_INVALID") || !contains(p2.body, "at least 5MB") {
			t.Errorf("second PATCH after small part = %d %s", p2.status, p2.body)
		}
	})
	t.Run("5 MiB part then another part", func(t *testing.T) {
		s := start(t, "")
		p := patch(t, s.header.Get("Location"), ecrtest.MinPartSize)
		if p.status != http.StatusCreated {
			t.Fatalf("PATCH = %d", p.status)
		}
		if p2 := patch(t, p.header.Get("Location"), 10); p2.status != http.StatusCreated {
			t.Errorf("second PATCH = %d %s", p2.status, p2.body)
		}
	})
	t.Run("mount dropped", func(t *testing.T) {
		dgst := seedOne(t, e, "team/src:1", 100)
		s := start(t, "?mount="+dgst+"&from=team/src")
		if s.status != http.StatusAccepted || s.header.Get("Location") == "" {
			t.Errorf("mount without BLOB_MOUNTING = %d, Location %q; want 202", s.status, s.header.Get("Location"))
		}
	})
	t.Run("mount enabled", func(t *testing.T) {
		m := ecrtest.New(t, ecrtest.WithBlobMounting(true))
		dgst := seedOne(t, m, "team/src:1", 100)
		r := do(t, http.MethodPost, m.RegistryURL()+"/v2/team/up/blobs/uploads/?mount="+dgst+"&from=team/src", basic(t, m), nil)
		if r.status != http.StatusCreated {
			t.Errorf("mount with BLOB_MOUNTING = %d, want 201", r.status)
		}
	})
}

// TestCounts checks that each request is counted exactly once by kind.
func TestCounts(t *testing.T) {
	e := ecrtest.New(t)
	dgst := seedOne(t, e, "team/app:1", 100)
	auth := basic(t, e)
	e.ResetCounts()
	base := e.RegistryURL()
	do(t, http.MethodGet, base+"/v2/", "", nil)
	do(t, http.MethodGet, base+"/v2/", auth, nil)
	do(t, http.MethodHead, base+"/v2/team/app/manifests/1", auth, nil)
	do(t, http.MethodGet, base+"/v2/team/app/manifests/1", auth, nil)
	do(t, http.MethodHead, base+"/v2/team/app/blobs/"+dgst, auth, nil)
	r := do(t, http.MethodGet, base+"/v2/team/app/blobs/"+dgst, auth, nil)
	do(t, http.MethodGet, r.header.Get("Location"), "", nil)
	do(t, http.MethodGet, base+"/v2/team/app/tags/list", auth, nil)
	do(t, http.MethodGet, base+"/v2/_catalog", auth, nil)
	do(t, http.MethodPost, base+"/v2/team/app/blobs/uploads/", auth, nil)
	want := map[ecrtest.Kind]int{
		ecrtest.KindPing: 2, ecrtest.KindManifestHEAD: 1, ecrtest.KindManifestGET: 1,
		ecrtest.KindBlobHEAD: 1, ecrtest.KindBlobGET: 1, ecrtest.KindS3GET: 1,
		ecrtest.KindTagsList: 1, ecrtest.KindCatalog: 1, ecrtest.KindUpload: 1,
	}
	got := e.Counts()
	if len(got) != len(want) {
		t.Errorf("Counts() = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Count(%s) = %d, want %d", k, got[k], v)
		}
	}
}

func TestFailRegistry(t *testing.T) {
	e := ecrtest.New(t)
	auth := basic(t, e)
	e.FailRegistry(2, http.StatusServiceUnavailable)
	for i := range 2 {
		r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", auth, nil)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" {
			t.Errorf("request %d = %d, Retry-After %q", i, r.status, r.header.Get("Retry-After"))
		}
	}
	if r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", auth, nil); r.status != http.StatusOK {
		t.Errorf("after faults = %d", r.status)
	}
}

// s3URL returns a fresh presigned URL for the blob.
func s3URL(t *testing.T, e *ecrtest.Emulator, auth, dgst string) string {
	t.Helper()
	r := do(t, http.MethodGet, e.RegistryURL()+"/v2/team/app/blobs/"+dgst, auth, nil)
	if r.status != http.StatusTemporaryRedirect {
		t.Fatalf("blob GET = %d", r.status)
	}
	return r.header.Get("Location")
}

func TestCutAndStallBlobs(t *testing.T) {
	e := ecrtest.New(t)
	dgst := seedOne(t, e, "team/app:1", 200_000)
	auth := basic(t, e)

	t.Run("cut", func(t *testing.T) {
		e.CutBlobs(1000)
		defer e.CutBlobs(-1)
		resp, err := http.Get(s3URL(t, e, auth, dgst))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if n != 1000 || !errors.Is(err, io.ErrUnexpectedEOF) || resp.ContentLength <= 1000 {
			t.Errorf("read %d bytes, err %v, Content-Length %d; want 1000, unexpected EOF, full size", n, err, resp.ContentLength)
		}
	})
	t.Run("stall", func(t *testing.T) {
		release := e.StallBlobs(5000)
		resp, err := http.Get(s3URL(t, e, auth, dgst))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		first := make([]byte, 5000)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatalf("reading before the stall: %v", err)
		}
		release()
		rest, err := io.ReadAll(resp.Body)
		if err != nil || int64(5000+len(rest)) != resp.ContentLength {
			t.Errorf("after release read %d more bytes, err %v; Content-Length %d", len(rest), err, resp.ContentLength)
		}
	})
}

func TestDownUp(t *testing.T) {
	e := ecrtest.New(t)
	auth := basic(t, e)
	addr := e.RegistryHost()
	if err := e.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	// An HTTP request rather than a bare dial: dialling a free ephemeral
	// port can connect to itself (TCP simultaneous open).
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.RegistryURL()+"/v2/", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("registry still answers after Down: %d", resp.StatusCode)
	}
	if err := e.Up(); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if e.RegistryHost() != addr {
		t.Errorf("address changed: %s -> %s", addr, e.RegistryHost())
	}
	if r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", auth, nil); r.status != http.StatusOK {
		t.Errorf("after Up = %d", r.status)
	}
}

// TestCloseReleasesListeners checks that every port can be listened on
// again once Close returns, and that a stalled body does not block Close.
func TestCloseReleasesListeners(t *testing.T) {
	e, err := ecrtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	dgst := seedOne(t, e, "team/app:1", 100_000)
	auth := basic(t, e)
	e.StallBlobs(10)
	resp, err := http.Get(s3URL(t, e, auth, dgst))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	addrs := []string{e.RegistryHost(), strings.TrimPrefix(e.APIURL(), "http://"), strings.TrimPrefix(e.S3URL(), "http://")}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("listen on %s after Close: %v", a, err)
			continue
		}
		_ = ln.Close()
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := e.Up(); !errors.Is(err, ecrtest.ErrClosed) {
		t.Errorf("Up after Close = %v, want ErrClosed", err)
	}
}

func TestStartRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  ecrtest.Option
		want error
	}{
		{"non-loopback", ecrtest.WithRegistryAddr("0.0.0.0:0"), ecrtest.ErrNotLoopback},
		{"bad account", ecrtest.WithAccountID("12"), ecrtest.ErrBadConfig},
		{"bad page size", ecrtest.WithTagsPageSize(0), ecrtest.ErrBadConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ecrtest.Start(tc.opt)
			if !errors.Is(err, tc.want) {
				t.Errorf("Start = %v, want %v", err, tc.want)
			}
			if e != nil {
				_ = e.Close()
			}
		})
	}
}
