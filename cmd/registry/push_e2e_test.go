package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// newPushEmulator starts an emulator whose S3 host name go-containerregistry
// accepts, so that tests can pull from it directly.
func newPushEmulator(t *testing.T) *ecrtest.Emulator {
	t.Helper()
	ecrtest.ClearAWSEnv(t)
	return ecrtest.New(t, ecrtest.WithS3Addr("127.0.0.1:0"), ecrtest.WithS3URLHost("localhost"))
}

// TestPushPassthrough pushes Docker schema2 and OCI images and a
// multi-platform index through the proxy with go-containerregistry, and a
// layer over 5 MiB in 5 MiB chunks plus a monolithic blob with raw
// requests; checks that ECR holds exactly what was pushed; then pulls
// everything through the proxy without a single upstream blob GET.
func TestPushPassthrough(t *testing.T) {
	emu := newPushEmulator(t)
	p := startProxy(t, emu, proxyOpts{})
	ctx := t.Context()

	images := map[string]v1.Image{}
	for ref, mt := range map[string]types.MediaType{
		"team/schema2:1.0": types.DockerManifestSchema2,
		"team/oci:1.0":     types.OCIManifestSchema1,
	} {
		img, err := ecrtest.RandomImage(3, 300<<10, mt)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(proxyRef(t, p, ref), img, remote.WithContext(ctx)); err != nil {
			t.Fatalf("push %s through the proxy: %v", ref, err)
		}
		images[ref] = img
	}
	idx, err := ecrtest.RandomIndex(2, 2, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(proxyRef(t, p, "team/multi:1.0"), idx, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push index through the proxy: %v", err)
	}

	// Chunked (a 12 MiB layer in 5 MiB parts) and monolithic (the config),
	// with the manifest put by hand.
	big, err := ecrtest.RandomImage(1, 12<<20, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := big.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer := mustRead(t, layers[0].Compressed)
	if len(layer) <= 2*ecrtest.MinPartSize {
		t.Fatalf("layer of %d bytes does not make three parts", len(layer))
	}
	up := uploader{t: t, client: http.DefaultClient, base: p.URL()}
	chunks := up.blob("team/chunked", layer, ecrtest.MinPartSize)
	if chunks != 3 {
		t.Errorf("layer went in %d PATCH requests, want 3", chunks)
	}
	cfg, err := big.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	up.blob("team/chunked", cfg, 0)
	up.manifest("team/chunked", "1.0", big)
	images["team/chunked:1.0"] = big

	// ECR holds what was pushed, byte for byte.
	for ref, img := range images {
		want, err := readImage(img)
		if err != nil {
			t.Fatal(err)
		}
		got := pullDirect(t, emu, ref)
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(pulled{})); diff != "" {
			t.Errorf("%s in ECR differs from what was pushed (-pushed +ecr):\n%s", ref, diff)
		}
	}
	indexDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	pullDirectIndex(t, emu, "team/multi:1.0", indexDigest.String())

	// The first pull through the proxy is served from what the push left
	// in the cache.
	emu.ResetCounts()
	for ref, img := range images {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		mustPull(t, p, ref, d.String())
	}
	pullIndex(t, p, "team/multi:1.0", indexDigest.String())
	for _, k := range []ecrtest.Kind{ecrtest.KindBlobGET, ecrtest.KindS3GET, ecrtest.KindManifestGET} {
		if n := emu.Count(k); n != 0 {
			t.Errorf("first pull after the push: %s = %d, want 0 (all counts: %v)", k, n, emu.Counts())
		}
	}
}

// TestPushClientAuth: with htpasswd configured, anonymous and wrong
// credentials are refused before anything reaches ECR, and an
// authenticated push lands in ECR.
func TestPushClientAuth(t *testing.T) {
	emu := newPushEmulator(t)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{
		Extra: fmt.Sprintf("auth:\n  htpasswd:\n    realm: ecr-proxy\n    path: %s\n", htpasswd),
		// DELETE reaches the access check only when forwarding is enabled.
		ECRExtra: []string{"delete: enabled"},
	}})
	img, err := ecrtest.RandomImage(1, 64<<10, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	ref := proxyRef(t, p, "team/app:1")

	err = remote.Write(ref, img, remote.WithContext(t.Context()))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous push: %v, want 401", err)
	}
	manifest, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	writes := []struct{ method, path string }{
		{http.MethodPost, "/v2/team/app/blobs/uploads/"},
		{http.MethodPost, "/v2/team/app/blobs/uploads/?mount=sha256:" + strings.Repeat("a", 64) + "&from=team/other"},
		{http.MethodPatch, "/v2/team/app/blobs/uploads/0123-abcd"},
		{http.MethodPut, "/v2/team/app/blobs/uploads/0123-abcd?digest=sha256:" + strings.Repeat("a", 64)},
		{http.MethodDelete, "/v2/team/app/blobs/uploads/0123-abcd"},
		{http.MethodGet, "/v2/team/app/blobs/uploads/0123-abcd"},
		{http.MethodPut, "/v2/team/app/manifests/1"},
		{http.MethodDelete, "/v2/team/app/manifests/1"},
		{http.MethodDelete, "/v2/team/app/blobs/sha256:" + strings.Repeat("a", 64)},
	}
	for _, creds := range []struct {
		name     string
		user, pw string
	}{{"anonymous", "", ""}, {"wrong password", "alice", "wrong"}, {"unknown user", "mallory", "s3cret"}} {
		for _, w := range writes {
			req, err := http.NewRequestWithContext(t.Context(), w.method, p.URL()+w.path, bytes.NewReader(manifest))
			if err != nil {
				t.Fatal(err)
			}
			if creds.user != "" {
				req.SetBasicAuth(creds.user, creds.pw)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Www-Authenticate"), `Basic realm="ecr-proxy"`) ||
				!strings.Contains(string(body), "UNAUTHORIZED") {
				t.Errorf("%s %s %s: %s %q %s, want 401 UNAUTHORIZED with the proxy's Basic challenge",
					creds.name, w.method, w.path, resp.Status, resp.Header.Get("Www-Authenticate"), body)
			}
		}
	}
	for _, k := range []ecrtest.Kind{ecrtest.KindUpload, ecrtest.KindManifestPUT, ecrtest.KindManifestDELETE, ecrtest.KindBlobDELETE} {
		if n := emu.Count(k); n != 0 {
			t.Errorf("refused writes reached ECR: %s = %d", k, n)
		}
	}

	alice := remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})
	if err := remote.Write(ref, img, remote.WithContext(t.Context()), alice); err != nil {
		t.Fatalf("authenticated push: %v", err)
	}
	want, err := readImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, pullDirect(t, emu, "team/app:1"), cmp.AllowUnexported(pulled{})); diff != "" {
		t.Errorf("ECR differs from the push (-pushed +ecr):\n%s", diff)
	}
}

// TestPushLocationBehindTLSProxy runs the proxy behind a TLS-terminating
// reverse proxy that sets X-Forwarded-Proto and X-Forwarded-Host. Trusted,
// upload Locations point at the public https URL and a whole push through
// it works; untrusted, the headers are ignored.
func TestPushLocationBehindTLSProxy(t *testing.T) {
	emu := newPushEmulator(t)
	const public = "registry.example.com" // in httptest's certificate
	for _, tt := range []struct {
		name    string
		extra   string
		trusted bool
	}{
		{"trusted", "  trustedproxies:\n    - 127.0.0.1/32\n", true},
		{"untrusted", "  trustedproxies:\n    - 10.0.0.0/8\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{Extra: tt.extra}})
			target, err := url.Parse(p.URL())
			if err != nil {
				t.Fatal(err)
			}
			lb := httptest.NewTLSServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Header.Set("X-Forwarded-Proto", "https")
				pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
			}})
			t.Cleanup(lb.Close)
			tr := lb.Client().Transport.(*http.Transport).Clone()
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, lb.Listener.Addr().String())
			}
			client := &http.Client{Transport: tr}

			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+public+"/v2/team/tls/blobs/uploads/", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			loc := resp.Header.Get("Location")
			wantPrefix := "https://" + public + "/v2/team/tls/blobs/uploads/"
			if !tt.trusted {
				wantPrefix = "http://" + p.Addr + "/v2/team/tls/blobs/uploads/"
			}
			if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, wantPrefix) {
				t.Fatalf("upload start: %s, Location %q, want 202 and a Location starting %q", resp.Status, loc, wantPrefix)
			}
			if !tt.trusted {
				return
			}
			img, err := ecrtest.RandomImage(2, 128<<10, types.DockerManifestSchema2)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(public + "/team/tls:1")
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(ref, img, remote.WithContext(t.Context()), remote.WithTransport(tr)); err != nil {
				t.Fatalf("push through the TLS-terminating proxy: %v", err)
			}
			want, err := readImage(img)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, pullDirect(t, emu, "team/tls:1"), cmp.AllowUnexported(pulled{})); diff != "" {
				t.Errorf("ECR differs from the push (-pushed +ecr):\n%s", diff)
			}
		})
	}
}

// TestPushTokenExpiry: an expired token at upload start and before a
// body-less request is renewed and the request replayed, invisibly. A
// token refused while a chunk streams cannot be replayed: the client gets
// 503 UNAVAILABLE (which clients retry), the token is renewed at once, the
// upload session at ECR survives with what it had, and retrying the chunk
// in the same session completes the upload.
func TestPushTokenExpiry(t *testing.T) {
	emu := newPushEmulator(t)
	p := startProxy(t, emu, proxyOpts{})
	up := uploader{t: t, client: http.DefaultClient, base: p.URL()}
	data := make([]byte, ecrtest.MinPartSize+1<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)

	emu.ExpireTokens()
	mints := emu.Count(ecrtest.KindTokenMint)
	loc := up.start("team/expiry")
	if n := emu.Count(ecrtest.KindTokenMint); n != mints+1 {
		t.Errorf("mints after an expired token at upload start = %d, want %d", n, mints+1)
	}
	loc = up.patch(loc, data[:ecrtest.MinPartSize], 0, http.StatusAccepted)

	emu.ExpireTokens()
	mints = emu.Count(ecrtest.KindTokenMint)
	resp := up.do(http.MethodPatch, loc, data[ecrtest.MinPartSize:], map[string]string{
		"Content-Range": fmt.Sprintf("%d-%d", ecrtest.MinPartSize, len(data)-1),
	})
	if resp.status != http.StatusServiceUnavailable || !strings.Contains(resp.body, "UNAVAILABLE") || !strings.Contains(resp.body, "renewed") {
		t.Fatalf("chunk with a token expired mid-upload: %d %s, want 503 UNAVAILABLE saying the token was renewed", resp.status, resp.body)
	}
	if n := emu.Count(ecrtest.KindTokenMint); n != mints+1 {
		t.Errorf("mints after the refused chunk = %d, want %d (renewed at once)", n, mints+1)
	}
	status := up.do(http.MethodGet, loc, nil, nil)
	wantRange := fmt.Sprintf("0-%d", ecrtest.MinPartSize-1)
	if status.status != http.StatusNoContent || status.header.Get("Range") != wantRange {
		t.Fatalf("upload status after the refusal: %d Range %q, want 204 Range %q (the session survives)", status.status, status.header.Get("Range"), wantRange)
	}
	loc = up.patch(loc, data[ecrtest.MinPartSize:], ecrtest.MinPartSize, http.StatusAccepted)

	emu.ExpireTokens() // the final PUT has no body: replayed
	up.finish(loc, d.String())
	direct := directHead(t, emu, "team/expiry", d.String())
	if direct != http.StatusOK {
		t.Errorf("blob in ECR after the retried upload: HEAD %d, want 200", direct)
	}

	// A real client: the token expires after go-containerregistry started
	// the upload and before it sends the layer; it gets 503 and retries
	// the whole blob upload, which succeeds.
	img, err := ecrtest.RandomImage(1, 256<<10, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(p.Addr+"/team/expiry-ggcr", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	mints = emu.Count(ecrtest.KindTokenMint)
	layer := &expiringLayer{Layer: layers[0], expire: emu.ExpireTokens}
	if err := remote.WriteLayer(repo, layer, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push with the token expiring mid-upload: %v", err)
	}
	if layer.opened < 2 {
		t.Errorf("layer read %d times, want a retry", layer.opened)
	}
	if _, err := p.WaitForLog(t.Context(), "ECR refused the token during an upload", "team/expiry-ggcr", "renewed: true"); err != nil {
		t.Error(err)
	}
	if n := emu.Count(ecrtest.KindTokenMint); n != mints+1 {
		t.Errorf("mints = %d, want %d", n, mints+1)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	if s := directHead(t, emu, "team/expiry-ggcr", ld.String()); s != http.StatusOK {
		t.Errorf("layer in ECR: HEAD %d, want 200", s)
	}
}

// expiringLayer expires every ECR token the first time its content is
// opened: after the upload started, before the chunk is sent.
type expiringLayer struct {
	v1.Layer
	expire func()
	opened int
}

func (l *expiringLayer) Compressed() (io.ReadCloser, error) {
	l.opened++
	if l.opened == 1 {
		l.expire()
	}
	return l.Layer.Compressed()
}

// proxyRef names ref on the proxy.
func proxyRef(t *testing.T, p *proxytest.Proxy, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(p.Addr+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// directOptions authenticate to the emulated ECR with a fresh token.
func directOptions(t *testing.T, emu *ecrtest.Emulator) []remote.Option {
	t.Helper()
	user, pw, err := emu.Token()
	if err != nil {
		t.Fatal(err)
	}
	return []remote.Option{remote.WithContext(t.Context()), remote.WithAuth(&authn.Basic{Username: user, Password: pw})}
}

// pullDirect pulls ref from the emulated ECR, not through the proxy.
func pullDirect(t *testing.T, emu *ecrtest.Emulator, ref string) pulled {
	t.Helper()
	r, err := name.ParseReference(emu.RegistryHost()+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, directOptions(t, emu)...)
	if err != nil {
		t.Fatalf("pull %s from ECR: %v", ref, err)
	}
	got, err := readImage(img)
	if err != nil {
		t.Fatalf("pull %s from ECR: %v", ref, err)
	}
	return got
}

// pullDirectIndex pulls an index and its images from the emulated ECR.
func pullDirectIndex(t *testing.T, emu *ecrtest.Emulator, ref, wantDigest string) {
	t.Helper()
	r, err := name.ParseReference(emu.RegistryHost()+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r, directOptions(t, emu)...)
	if err != nil {
		t.Fatalf("pull index %s from ECR: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil || d.String() != wantDigest {
		t.Fatalf("index %s in ECR: digest %v (%v), want %s", ref, d, err, wantDigest)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readImage(img); err != nil {
			t.Errorf("child %s in ECR: %v", m.Digest, err)
		}
	}
}

// directHead returns the status of a blob HEAD at the emulated ECR.
func directHead(t *testing.T, emu *ecrtest.Emulator, repo, dgst string) int {
	t.Helper()
	user, pw, err := emu.Token()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, emu.RegistryURL()+"/v2/"+repo+"/blobs/"+dgst, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func mustRead(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// uploader drives the blob upload protocol by hand, as a chunking client
// does, checking every answer.
type uploader struct {
	t      *testing.T
	client *http.Client
	base   string
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (u uploader) do(method, target string, body []byte, header map[string]string) answer {
	u.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(u.t.Context(), method, target, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		u.t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// location resolves a Location against the proxy and checks that it
// leads back to the proxy.
func (u uploader) location(a answer) string {
	u.t.Helper()
	base, err := url.Parse(u.base)
	if err != nil {
		u.t.Fatal(err)
	}
	loc, err := base.Parse(a.header.Get("Location"))
	if err != nil {
		u.t.Fatal(err)
	}
	if loc.Host != base.Host || !strings.HasPrefix(loc.Path, "/v2/") {
		u.t.Fatalf("Location %q does not lead back to the proxy %s", a.header.Get("Location"), u.base)
	}
	return loc.String()
}

func (u uploader) start(repo string) string {
	u.t.Helper()
	a := u.do(http.MethodPost, u.base+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	if a.status != http.StatusAccepted {
		u.t.Fatalf("upload start: %d %s, want 202", a.status, a.body)
	}
	return u.location(a)
}

func (u uploader) patch(loc string, part []byte, offset, want int) string {
	u.t.Helper()
	a := u.do(http.MethodPatch, loc, part, map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": fmt.Sprintf("%d-%d", offset, offset+len(part)-1),
	})
	if a.status != want {
		u.t.Fatalf("PATCH %d bytes at %d: %d %s, want %d", len(part), offset, a.status, a.body, want)
	}
	if r := fmt.Sprintf("0-%d", offset+len(part)-1); a.header.Get("Range") != r {
		u.t.Errorf("PATCH answered Range %q, want %q", a.header.Get("Range"), r)
	}
	return u.location(a)
}

// withDigest adds ?digest= to an upload Location.
func withDigest(t *testing.T, loc, dgst string) string {
	t.Helper()
	l, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	q := l.Query()
	q.Set("digest", dgst)
	l.RawQuery = q.Encode()
	return l.String()
}

func (u uploader) finish(loc, dgst string) {
	u.t.Helper()
	a := u.do(http.MethodPut, withDigest(u.t, loc, dgst), nil, nil)
	if a.status != http.StatusCreated {
		u.t.Fatalf("upload end: %d %s, want 201", a.status, a.body)
	}
}

// blob uploads data to repo: monolithic (POST, PUT with the body) when
// chunk is 0, else in PATCH requests of chunk bytes, the last shorter. It
// returns the number of PATCH requests.
func (u uploader) blob(repo string, data []byte, chunk int) int {
	u.t.Helper()
	d := digest.FromBytes(data).String()
	loc := u.start(repo)
	if chunk == 0 {
		a := u.do(http.MethodPut, withDigest(u.t, loc, d), data, map[string]string{"Content-Type": "application/octet-stream"})
		if a.status != http.StatusCreated {
			u.t.Fatalf("monolithic upload: %d %s, want 201", a.status, a.body)
		}
		return 0
	}
	n := 0
	for off := 0; off < len(data); off += chunk {
		loc = u.patch(loc, data[off:min(off+chunk, len(data))], off, http.StatusAccepted)
		n++
	}
	u.finish(loc, d)
	return n
}

// manifest puts img's manifest to repo:tag.
func (u uploader) manifest(repo, tag string, img v1.Image) {
	u.t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		u.t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		u.t.Fatal(err)
	}
	a := u.do(http.MethodPut, u.base+"/v2/"+repo+"/manifests/"+tag, raw, map[string]string{"Content-Type": string(mt)})
	if a.status != http.StatusCreated {
		u.t.Fatalf("manifest put: %d %s, want 201", a.status, a.body)
	}
}
