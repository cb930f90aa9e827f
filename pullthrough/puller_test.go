package pullthrough

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// basicAuth presents a token minted by the emulator to its registry host
// only, as auth.Transport does (never to S3).
type basicAuth struct{ host, user, password string }

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == b.host {
		r = r.Clone(r.Context())
		r.SetBasicAuth(b.user, b.password)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// rig is a Puller in front of the emulator, over an lrufilesystem local
// store, and an HTTP server that calls its blob store as distribution's
// blob handler does: Stat, then ServeBlob.
type rig struct {
	emu   *ecrtest.Emulator
	cache *lrufs.Driver
	spool string
	p     *Puller
	ns    distribution.Namespace
	srv   *httptest.Server
	blobs *blobStore
	// requests numbers the requests, as distribution's request ids do.
	requests atomic.Int64
}

func newRig(t *testing.T, opts ...Option) *rig {
	t.Helper()
	return newBoundedRig(t, 0, opts...)
}

// newBoundedRig is newRig with a cache bounded to maxSize bytes (0:
// unbounded).
func newBoundedRig(t *testing.T, maxSize int64, opts ...Option) *rig {
	t.Helper()
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	user, pw, err := emu.Token()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	d, err := lrufs.New(lrufs.Parameters{RootDirectory: root + "/cache", MaxSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := storage.NewRegistry(t.Context(), d, storage.DisableDigestResumption)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(emu.RegistryURL(), basicAuth{emu.RegistryHost(), user, pw}, append([]Option{WithSpoolDir(root)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.InitRegistry(t.Context(), ns, d, nil); err != nil {
		t.Fatal(err)
	}
	named, err := reference.WithName("team/app")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{emu: emu, cache: d, spool: root, p: p, ns: ns, blobs: &blobStore{p: p, local: ns, name: named}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Wait(ctx); err != nil {
			t.Errorf("downloads still running at the end: %v", err)
		}
	})
	return r
}

// serve is distribution's blob handler in miniature, with the method on
// the context under the key distribution's request context answers.
func (r *rig) serve(w http.ResponseWriter, req *http.Request) {
	dgst := digest.Digest(req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:])
	ctx := context.WithValue(req.Context(), "http.request.method", req.Method)     //nolint:staticcheck,revive // distribution's own string key
	ctx = context.WithValue(ctx, "http.request.id", fmt.Sprint(r.requests.Add(1))) //nolint:staticcheck,revive // as above
	if _, err := r.blobs.Stat(ctx, dgst); err != nil {
		writeErrorStatus(w, err)
		return
	}
	if err := r.blobs.ServeBlob(ctx, w, req, dgst); err != nil {
		// distribution answers an error returned before anything was
		// written; after, the response is already under way.
		writeErrorStatus(w, err)
	}
}

// writeErrorStatus answers err's status, as distribution's handlers do.
func writeErrorStatus(w http.ResponseWriter, err error) {
	var ec errcode.Error
	if errors.As(err, &ec) {
		w.WriteHeader(ec.Code.Descriptor().HTTPStatusCode)
		return
	}
	w.WriteHeader(http.StatusNotFound)
}

// seed puts a one-layer image in the emulator and returns the layer.
func (r *rig) seed(t *testing.T, tag string, size int64) (digest.Digest, []byte) {
	t.Helper()
	img, err := ecrtest.RandomImage(1, size, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.emu.Seed(t.Context(), "team/app:"+tag, img); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return digest.FromBytes(b), b
}

// get starts a GET of dgst; header is name, value pairs.
func (r *rig) get(ctx context.Context, t *testing.T, dgst digest.Digest, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.srv.URL+"/v2/team/app/blobs/"+dgst.String(), nil)
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
	return resp
}

// cached reports whether the local store holds dgst for team/app.
func (r *rig) cached(t *testing.T, dgst digest.Digest) bool {
	t.Helper()
	named, _ := reference.WithName("team/app")
	repo, err := r.ns.Repository(t.Context(), named)
	if err != nil {
		t.Fatal(err)
	}
	_, err = repo.Blobs(t.Context()).Stat(t.Context(), dgst)
	return err == nil
}

// TestSharedDownloadUnderRace: clients joining one stalled download,
// whole and ranged, and one leaving mid-stream, all get their bytes from
// one upstream GET, and the blob is cached.
func TestSharedDownloadUnderRace(t *testing.T) {
	r := newRig(t)
	dgst, want := r.seed(t, "1", 2<<20)
	release := r.emu.StallBlobs(1 << 20)
	quit, cancel := context.WithCancel(t.Context())
	quitter := r.get(quit, t, dgst)
	if _, err := io.ReadFull(quitter.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel() // leaves mid-stream
	_ = quitter.Body.Close()
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			var resp *http.Response
			lo, hi := 0, len(want)
			switch i % 3 {
			case 1:
				lo, hi = 1000, 1999
				resp = r.get(t.Context(), t, dgst, "Range", fmt.Sprintf("bytes=%d-%d", lo, hi-1))
			case 2:
				lo = len(want) - 5000
				resp = r.get(t.Context(), t, dgst, "Range", fmt.Sprintf("bytes=%d-", lo))
			default:
				resp = r.get(t.Context(), t, dgst)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(b, want[lo:hi]) {
				t.Errorf("client %d: %d bytes [%d, %d), %v", i, len(b), lo, hi, err)
			}
		})
	}
	// Every client has its headers once the flight started; release.
	release()
	wg.Wait()
	if n := r.emu.Count(ecrtest.KindBlobGET); n != 1 {
		t.Errorf("upstream blob GETs = %d, want 1", n)
	}
	ctx, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	if err := r.p.Wait(ctx); err != nil || !r.cached(t, dgst) {
		t.Errorf("after the download: cached %t, %v", r.cached(t, dgst), err)
	}
}

// TestBrokenDownloadsUnderRace: a corrupt, cut or stalled body reaches no
// client complete, whole or ranged, and nothing is cached.
func TestBrokenDownloadsUnderRace(t *testing.T) {
	r := newRig(t, WithIdleTimeout(500*time.Millisecond))
	for i, tt := range []struct {
		name   string
		inject func() (undo func())
	}{
		{"corrupt", func() func() { r.emu.CorruptBlobs(200 << 10); return func() { r.emu.CorruptBlobs(-1) } }},
		{"cut", func() func() { r.emu.CutBlobs(200 << 10); return func() { r.emu.CutBlobs(-1) } }},
		{"stalled past the idle timeout", func() func() { return r.emu.StallBlobs(200 << 10) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dgst, want := r.seed(t, fmt.Sprint(i), 256<<10)
			undo := tt.inject()
			defer undo()
			var wg sync.WaitGroup
			for c := range 6 {
				wg.Go(func() {
					var resp *http.Response
					if c%2 == 1 {
						resp = r.get(t.Context(), t, dgst, "Range", "bytes=100-")
					} else {
						resp = r.get(t.Context(), t, dgst)
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					// A client whose download failed before its
					// answer began gets an error status; one
					// answered meanwhile gets the first bytes,
					// then the error: never a complete 2xx.
					if err == nil && resp.StatusCode/100 == 2 {
						t.Errorf("client %d: %d complete %d-byte answer of a broken %d-byte body", c, resp.StatusCode, len(b), len(want))
					}
					if resp.StatusCode/100 == 2 && len(b) == 0 {
						t.Errorf("client %d: %d with no byte: want the download's first bytes, then the error", c, resp.StatusCode)
					}
				})
			}
			wg.Wait()
			ctx, stop := context.WithTimeout(t.Context(), 30*time.Second)
			defer stop()
			if err := r.p.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if r.cached(t, dgst) {
				t.Error("the broken download was cached")
			}
		})
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestTagWindowOnInjectedClock: inside the revalidation window a tag is
// resolved locally without asking ECR; past it, ECR is asked again.
func TestTagWindowOnInjectedClock(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := newRig(t, WithTagTTL(time.Hour), WithClock(clock.now))
	img, err := ecrtest.RandomImage(1, 1024, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.emu.Seed(t.Context(), "team/app:1", img); err != nil {
		t.Fatal(err)
	}
	named, _ := reference.WithName("team/app")
	user, pw, err := r.emu.Token()
	if err != nil {
		t.Fatal(err)
	}
	remote := headTags{url: r.emu.RegistryURL() + "/v2/team/app/manifests/", rt: basicAuth{r.emu.RegistryHost(), user, pw}}
	tags := &tagService{TagService: remote, p: r.p, local: r.ns, name: named}
	desc, err := tags.Get(t.Context(), "1") // asks ECR, opens the window
	if err != nil {
		t.Fatal(err)
	}
	// As distribution's proxy does after asking ECR: the local tag.
	local, err := r.ns.Repository(t.Context(), named)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Tags(t.Context()).Tag(t.Context(), "1", desc); err != nil {
		t.Fatal(err)
	}
	asked := func() int { return r.emu.Count(ecrtest.KindManifestHEAD) + r.emu.Count(ecrtest.KindManifestGET) }
	before := asked()
	for _, step := range []struct {
		advance time.Duration
		wantAsk bool
	}{
		{30 * time.Minute, false},
		{29 * time.Minute, false},
		{2 * time.Minute, true}, // 61 minutes after ECR was asked
		{time.Minute, false},    // the window opened again
	} {
		clock.advance(step.advance)
		got, err := tags.Get(t.Context(), "1")
		if err != nil || got.Digest != desc.Digest {
			t.Fatalf("Get: %v, %v", got.Digest, err)
		}
		if asked := asked() > before; asked != step.wantAsk {
			t.Errorf("after +%s: ECR asked = %t, want %t", step.advance, asked, step.wantAsk)
		}
		before = asked()
	}
}

// headTags resolves tags with a manifest HEAD to the registry, as
// distribution's remote tag service does; nothing else is used here.
type headTags struct {
	distribution.TagService
	url string
	rt  http.RoundTripper
}

func (h headTags) Get(ctx context.Context, tag string) (v1.Descriptor, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, h.url+tag, nil)
	if err != nil {
		return v1.Descriptor{}, err
	}
	req.Header.Set("Accept", v1.MediaTypeImageManifest)
	resp, err := h.rt.RoundTrip(req)
	if err != nil {
		return v1.Descriptor{}, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v1.Descriptor{}, fmt.Errorf("HEAD %s: %s", tag, resp.Status)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	return v1.Descriptor{MediaType: resp.Header.Get("Content-Type"), Digest: d, Size: resp.ContentLength}, err
}
