package pushthrough

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// newLocal returns a WriteThrough holding a fresh in-memory local
// namespace, configured like distribution's in proxy mode.
func newLocal(t *testing.T, opts ...WriteThroughOption) (*WriteThrough, distribution.Namespace) {
	t.Helper()
	return newLocalOn(t, "inmemory", opts...)
}

// stores are the two ways a pushed blob enters the cache: distribution's
// blob writer (any driver; here inmemory), and a spool file the driver
// adopts (lrufilesystem).
var stores = []string{"inmemory", lrufs.DriverName}

// forEachStore runs test, in parallel, on each of the stores.
func forEachStore(t *testing.T, test func(*testing.T, string)) {
	t.Parallel()
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			test(t, store)
		})
	}
}

// gatewayToEmulator is a gateway writing through to a new local store
// of the named kind, pushing to a new emulator with a token it minted.
func gatewayToEmulator(t *testing.T, store string) (*WriteThrough, distribution.Namespace, *httptest.Server) {
	t.Helper()
	emu := ecrtest.New(t)
	user, pw, err := emu.Token()
	if err != nil {
		t.Fatal(err)
	}
	wt, ns := newLocalOn(t, store)
	return wt, ns, newGateway(t, emu.RegistryURL(), basicTransport{user, pw}, nil, WithWriteThrough(wt))
}

// newLocalOn is newLocal on the named store.
func newLocalOn(t *testing.T, store string, opts ...WriteThroughOption) (*WriteThrough, distribution.Namespace) {
	t.Helper()
	var d storagedriver.StorageDriver = inmemory.New()
	if store == lrufs.DriverName {
		root := t.TempDir()
		fs, err := lrufs.New(lrufs.Parameters{RootDirectory: filepath.Join(root, "cache")})
		if err != nil {
			t.Fatal(err)
		}
		d = fs
		spool := filepath.Join(root, "spool")
		if err := os.Mkdir(spool, 0o700); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, WithWriteThroughSpoolDir(spool))
	}
	ns, err := storage.NewRegistry(t.Context(), d, storage.DisableDigestResumption, storage.EnableDelete)
	if err != nil {
		t.Fatal(err)
	}
	wt := NewWriteThrough(opts...)
	if _, err := wt.Init(t.Context(), ns, d, nil); err != nil {
		t.Fatal(err)
	}
	return wt, ns
}

func localRepo(t *testing.T, ns distribution.Namespace, repo string) distribution.Repository {
	t.Helper()
	named, err := reference.WithName(repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ns.Repository(t.Context(), named)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hasBlob(t *testing.T, ns distribution.Namespace, repo string, d digest.Digest) bool {
	t.Helper()
	_, err := localRepo(t, ns, repo).Blobs(t.Context()).Stat(t.Context(), d)
	if err != nil && !errors.Is(err, distribution.ErrBlobUnknown) {
		t.Fatalf("stat %s: %v", d, err)
	}
	return err == nil
}

// TestWriteThroughPush pushes an image, an index and a chunked blob
// through the gateway to the emulator and finds all of it, tags included,
// in the local store; a DELETE is mirrored.
func TestWriteThroughPush(t *testing.T) { forEachStore(t, testWriteThroughPush) }

func testWriteThroughPush(t *testing.T, store string) {
	_, ns, gw := gatewayToEmulator(t, store)
	host := strings.TrimPrefix(gw.URL, "http://")

	img, err := ecrtest.RandomImage(2, 100<<10, types.DockerManifestSchema2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/team/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	idx, err := ecrtest.RandomIndex(2, 1, 10<<10)
	if err != nil {
		t.Fatal(err)
	}
	iref, err := name.ParseReference(host+"/team/multi:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(iref, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}

	checkImage := func(repo string, img v1.Image) {
		t.Helper()
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		want := []v1.Hash{cfg}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, d)
		}
		for _, h := range want {
			if !hasBlob(t, ns, repo, digest.Digest(h.String())) {
				t.Errorf("%s: blob %s not in the local store", repo, h)
			}
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		checkManifest(t, ns, repo, digest.Digest(d.String()))
	}
	checkImage("team/app", img)
	checkTag(t, ns, "team/app", "1", img)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		child, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage("team/multi", child)
	}
	checkTag(t, ns, "team/multi", "1", idx)

	// A layer in 5 MiB chunks.
	data := make([]byte, 2*ecrtest.MinPartSize+100)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)
	resp, body := do(t, "POST", gw.URL+"/v2/team/big/blobs/uploads/", nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s %s", resp.Status, body)
	}
	loc := resp.Header.Get("Location")
	for off := 0; off < len(data); off += ecrtest.MinPartSize {
		end := min(off+ecrtest.MinPartSize, len(data))
		resp, body = do(t, "PATCH", loc, strings.NewReader(string(data[off:end])), map[string]string{"Content-Range": fmt.Sprintf("%d-%d", off, end-1)})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("PATCH at %d: %s %s", off, resp.Status, body)
		}
		loc = resp.Header.Get("Location")
	}
	resp, body = do(t, "PUT", loc+"&digest="+d.String(), nil, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s %s", resp.Status, body)
	}
	if !hasBlob(t, ns, "team/big", d) {
		t.Error("chunked blob not in the local store")
	}

	// DELETE by digest, accepted by ECR, is mirrored.
	md, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	resp, body = do(t, "DELETE", gw.URL+"/v2/team/app/manifests/"+md.String(), nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %s %s", resp.Status, body)
	}
	ms, err := localRepo(t, ns, "team/app").Manifests(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := ms.Exists(t.Context(), digest.Digest(md.String())); ok || err != nil {
		t.Errorf("manifest deleted in ECR still local: exists %t, %v", ok, err)
	}
}

func checkManifest(t *testing.T, ns distribution.Namespace, repo string, d digest.Digest) {
	t.Helper()
	ms, err := localRepo(t, ns, repo).Manifests(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Get(t.Context(), d); err != nil {
		t.Errorf("%s: manifest %s not in the local store: %v", repo, d, err)
	}
}

func checkTag(t *testing.T, ns distribution.Namespace, repo, tag string, m interface{ Digest() (v1.Hash, error) }) {
	t.Helper()
	want, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	desc, err := localRepo(t, ns, repo).Tags(t.Context()).Get(t.Context(), tag)
	if err != nil || desc.Digest.String() != want.String() {
		t.Errorf("%s:%s locally: %v (%v), want %s", repo, tag, desc.Digest, err, want)
	}
}

// TestWriteThroughNeverFailsThePush: when the copy cannot be trusted (a
// digest mismatch, a chunk ECR holds differently, a chunk out of order),
// the client still gets ECR's answer and nothing is cached.
func TestWriteThroughNeverFailsThePush(t *testing.T) {
	forEachStore(t, testWriteThroughNeverFailsThePush)
}

func testWriteThroughNeverFailsThePush(t *testing.T, store string) {
	var uploads atomic.Int32
	ecr := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			w.Header().Set("Location", fmt.Sprintf("%su%d?_state=x", r.URL.Path, uploads.Add(1)))
			w.WriteHeader(http.StatusAccepted)
		case http.MethodPatch:
			// ECR's Range after the chunk: what the client sent, unless
			// the test says otherwise.
			rng := r.URL.Query().Get("range")
			if _, end, ok := parseRange(r.Header.Get("Content-Range")); ok && rng == "" {
				rng = fmt.Sprintf("0-%d", end)
			}
			w.Header().Set("Range", rng)
			w.Header().Set("Location", r.URL.Path+"?"+r.URL.RawQuery)
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusCreated)
		}
	})
	wt, ns := newLocalOn(t, store)
	gw := newGateway(t, ecr.URL, nil, nil, WithWriteThrough(wt))

	content := "hello, cache"
	good := digest.FromString(content)
	wrong := digest.FromString("something else")
	tests := []struct {
		name      string
		query     string // on the PATCH, steering the double
		rng       string // the client's Content-Range
		dgst      digest.Digest
		wantLocal bool
	}{
		{"consistent", "", "0-11", good, true},
		{"digest mismatch", "", "0-11", wrong, false},
		{"ECR holds another size", "range=0-3", "0-11", good, false},
		{"chunk out of order", "", "5-16", good, false},
	}
	for i, tt := range tests {
		repo := fmt.Sprintf("team/case%d", i)
		resp, _ := do(t, "POST", gw.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusAccepted || loc == "" {
			t.Fatalf("%s: POST %s Location %q", tt.name, resp.Status, loc)
		}
		patch := loc
		if tt.query != "" {
			patch += "&" + tt.query
		}
		resp, body := do(t, "PATCH", patch, strings.NewReader(content), map[string]string{"Content-Range": tt.rng})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: PATCH %s %s", tt.name, resp.Status, body)
		}
		resp, body = do(t, "PUT", loc+"&digest="+tt.dgst.String(), nil, nil)
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("%s: the push failed: %s %s", tt.name, resp.Status, body)
		}
		if got := hasBlob(t, ns, repo, tt.dgst); got != tt.wantLocal {
			t.Errorf("%s: cached = %t, want %t", tt.name, got, tt.wantLocal)
		}
	}
	if wt.spoolDir != "" {
		// Adopted or discarded: no copy is left behind.
		if entries, err := os.ReadDir(wt.spoolDir); err != nil || len(entries) != 0 {
			t.Errorf("spool directory after the uploads: %d files, %v", len(entries), err)
		}
	}
}

func TestWriteThroughBounds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	wt, _ := newLocal(t, WithMaxUploads(2), WithUploadIdleTimeout(time.Hour), withWriteThroughClock(clock))
	wt.begin("team/app", "a")
	wt.begin("team/app", "b")
	wt.begin("team/app", "c")
	if wt.session("team/app", "c") != nil {
		t.Error("a third session was tracked with a bound of 2")
	}
	now = now.Add(30 * time.Minute)
	_ = wt.tee(context.Background(), "team/app", "b", http.NoBody, "") // b is touched
	now = now.Add(45 * time.Minute)
	wt.begin("team/app", "d")
	for id, want := range map[string]bool{"a": false, "b": true, "d": true} {
		if got := wt.session("team/app", id) != nil; got != want {
			t.Errorf("session %s tracked = %t, want %t", id, got, want)
		}
	}

	// Without a namespace nothing is tracked.
	bare := NewWriteThrough()
	bare.begin("team/app", "a")
	if bare.session("team/app", "a") != nil {
		t.Error("tracked without a namespace")
	}
}

func TestParseRange(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in         string
		start, end int64
		ok         bool
	}{
		{"0-99", 0, 99, true}, {"bytes=5-9", 5, 9, true}, {"bytes 5-9", 5, 9, true},
		{"", 0, 0, false}, {"9-5", 0, 0, false}, {"a-b", 0, 0, false}, {"-5", 0, 0, false},
	} {
		s, e, ok := parseRange(tt.in)
		if s != tt.start || e != tt.end || ok != tt.ok {
			t.Errorf("parseRange(%q) = %d, %d, %t; want %d, %d, %t", tt.in, s, e, ok, tt.start, tt.end, tt.ok)
		}
	}
}

// TestWriteThroughConcurrentUploads: many uploads at once (POST, then PUT
// with the body and ?digest=) all reach ECR and the cache, and the upload
// path stays ready. Sessions starting while others copy their first bytes
// once took the table's and a session's locks in opposite orders and hung
// every later upload.
func TestWriteThroughConcurrentUploads(t *testing.T) {
	forEachStore(t, testWriteThroughConcurrentUploads)
}

func testWriteThroughConcurrentUploads(t *testing.T, store string) {
	wt, ns, gw := gatewayToEmulator(t, store)
	const workers, each = 32, 4
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	// send answers the status and the Location.
	send := func(method, url string, body []byte) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), resp.Body.Close()
	}

	digests := make([][]digest.Digest, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for j := range each {
				data := make([]byte, 64<<10)
				_, _ = rand.Read(data)
				d := digest.FromBytes(data)
				status, loc, err := send(http.MethodPost, gw.URL+"/v2/team/many/blobs/uploads/", nil)
				if err != nil || status != http.StatusAccepted {
					t.Errorf("upload %d.%d: POST: %d %v", i, j, status, err)
					return
				}
				if !strings.HasPrefix(loc, "http") {
					loc = gw.URL + loc
				}
				sep := "?"
				if strings.Contains(loc, "?") {
					sep = "&"
				}
				status, _, err = send(http.MethodPut, loc+sep+"digest="+d.String(), data)
				if err != nil || status != http.StatusCreated {
					t.Errorf("upload %d.%d: PUT: %d %v", i, j, status, err)
					return
				}
				digests[i] = append(digests[i], d)
			}
		})
	}
	wg.Wait()
	for _, ds := range digests {
		for _, d := range ds {
			if !hasBlob(t, ns, "team/many", d) {
				t.Errorf("%s pushed but not cached", d)
			}
		}
	}
	if err := wt.Ready(ctx); err != nil {
		t.Errorf("Ready after the uploads: %v", err)
	}
}

// TestBusySessionBlocksNoOtherUpload: a session whose lock is held (a
// local write or a commit's fsync in progress) does not hold up new
// uploads or the readiness check. The table's lock was once held while
// waiting for each session's, which let one slow session stall every
// POST and, with a session waiting on the table, deadlock them all.
func TestBusySessionBlocksNoOtherUpload(t *testing.T) {
	t.Parallel()
	wt, _ := newLocal(t)
	wt.begin("team/app", "busy")
	u := wt.session("team/app", "busy")
	if u == nil {
		t.Fatal("session not tracked")
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	started := make(chan struct{})
	go func() {
		wt.begin("team/app", "next")
		close(started)
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("a new upload waited for another session's local write")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := wt.Ready(ctx); err != nil {
		t.Errorf("Ready while one session is busy: %v", err)
	}
}
