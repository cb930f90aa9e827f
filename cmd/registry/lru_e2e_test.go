package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// End-to-end tests of the size-bounded cache (storage driver
// lrufilesystem) through the proxy binary and the ECR emulator.
//
// No test sleeps to wait for the cache: the proxy commits a blob to the
// cache after the client has all its bytes, so a test that needs the
// committed state stops the proxy (SIGTERM; http.draintimeout lets the
// commits in flight finish) and starts a new one on the same directory.
// The bound of a running proxy's cache, which holds once the blobs in use
// are released, is measured until it does (checkSettledBound).

const mib = 1 << 20

// lruCache is a cache directory and the configuration file of the proxies
// (and garbage-collect runs) that use it.
type lruCache struct {
	dir     string
	cfgPath string
	emu     *ecrtest.Emulator
}

// newLRUCache writes the configuration of an lrufilesystem cache of the
// given maxsize ("8m") in front of emu; params are further driver
// parameters (lowwater).
func newLRUCache(t *testing.T, emu *ecrtest.Emulator, maxsize string, params ...string) *lruCache {
	t.Helper()
	sp := map[string]string{"maxsize": maxsize}
	for i := 0; i+1 < len(params); i += 2 {
		sp[params[i]] = params[i+1]
	}
	c := &lruCache{dir: t.TempDir(), emu: emu}
	var err error
	c.cfgPath, err = proxytest.WriteConfig(t.TempDir(), proxytest.ConfigOptions{
		RemoteURL:     emu.RegistryURL(),
		Region:        emu.Region(),
		RootDirectory: c.dir,
		StorageDriver: "lrufilesystem",
		StorageParams: sp,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs a proxy on the cache, as startProxy does, and stops it at
// cleanup (stopping it earlier is fine).
func (c *lruCache) start(t *testing.T) *proxytest.Proxy {
	t.Helper()
	return runProxy(t, []string{"serve", c.cfgPath}, c.emu.Env())
}

// stop stops p gracefully: afterwards every blob it served is committed
// (or was refused by the cache).
func stop(t *testing.T, p *proxytest.Proxy) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Fatalf("stop proxy: %v", err)
	}
}

// blobDataPath is where the cache stores the blob with digest d.
func (c *lruCache) blobDataPath(d string) string {
	alg, h, _ := strings.Cut(d, ":")
	return filepath.Join(c.dir, "docker", "registry", "v2", "blobs", alg, h[:2], h, "data")
}

// cached reports which of the digests have their data in the cache.
func (c *lruCache) cached(t *testing.T, digests []string) (have, missing []string) {
	t.Helper()
	for _, d := range digests {
		_, err := os.Stat(c.blobDataPath(d))
		switch {
		case err == nil:
			have = append(have, d)
		case os.IsNotExist(err):
			missing = append(missing, d)
		default:
			t.Fatal(err)
		}
	}
	return have, missing
}

// dataBytes sums the sizes of the blob data files, which is what maxsize
// bounds.
func (c *lruCache) dataBytes(t *testing.T) int64 {
	t.Helper()
	var total int64
	root := filepath.Join(c.dir, "docker", "registry", "v2", "blobs")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == root {
				return filepath.SkipDir
			}
			// A blob evicted while we walk.
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() || d.Name() != "data" {
			return nil
		}
		fi, err := d.Info()
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		total += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// checkBound fails the test if the blob data exceeds limit bytes.
func (c *lruCache) checkBound(t *testing.T, limit int64, when string) {
	t.Helper()
	if n := c.dataBytes(t); n > limit {
		t.Errorf("%s: cache holds %d bytes of blob data, over maxsize %d", when, n, limit)
	}
}

// checkSettledBound is checkBound for the cache of a running proxy. The
// driver lets the blob data exceed maxsize while the blobs it would evict
// are busy, being read or committed, and evicts when they are released
// (see package lrufs), which may be after the clients have their bytes;
// nor is a walk of the directory a snapshot while blobs come and go. So
// it measures until the data is within the bound, and fails the test if it
// is still over when pollUntil gives up.
func (c *lruCache) checkSettledBound(t *testing.T, limit int64, when string) {
	t.Helper()
	var n int64
	if !pollUntil(t, func() bool { n = c.dataBytes(t); return n <= limit }) {
		t.Errorf("%s: cache holds %d bytes of blob data, over maxsize %d", when, n, limit)
	}
}

// image is an image seeded into the emulator.
type image struct {
	ref   string // repo:tag
	want  pulled
	blobs []string // manifest, config and layer digests
}

// seedLRUImage seeds a random OCI image of layers layers of size bytes.
func seedLRUImage(t *testing.T, emu *ecrtest.Emulator, ref string, layers int, size int64) image {
	t.Helper()
	_, want := seedImageContent(t, emu, ref, layers, size, types.OCIManifestSchema1)
	m, err := v1.ParseManifest(bytes.NewReader(want.manifest))
	if err != nil {
		t.Fatal(err)
	}
	blobs := append([]string{want.digest, m.Config.Digest.String()}, want.layers...)
	return image{ref: ref, want: want, blobs: blobs}
}

func (im image) repo() string {
	r, _, _ := strings.Cut(im.ref, ":")
	return r
}

// pullCounting pulls im (by tag) and returns how many blob GETs reached
// the emulator meanwhile. Only one pull may run at a time.
func pullCounting(t *testing.T, emu *ecrtest.Emulator, p *proxytest.Proxy, ref string, im image) int {
	t.Helper()
	emu.ResetCounts()
	got := mustPull(t, p, ref, im.want.digest)
	if strings.Join(got.layers, ",") != strings.Join(im.want.layers, ",") {
		t.Errorf("pull %s: layers %v, want %v", ref, got.layers, im.want.layers)
	}
	return emu.Count(ecrtest.KindBlobGET)
}

// TestLRUBoundEndToEnd pulls five images of about 3 MiB each through a
// proxy whose cache is bounded to 8 MiB: the blob data stays within the
// bound once each pull is over, the last image pulled stays cached whole,
// and the first one, evicted, pulls again correctly from ECR.
func TestLRUBoundEndToEnd(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	const maxsize = 8 * mib
	var images []image
	for i := range 5 {
		images = append(images, seedLRUImage(t, emu, fmt.Sprintf("team/lru%d:1", i), 2, 1536<<10))
	}
	c := newLRUCache(t, emu, "8m")
	p := c.start(t)
	for i, im := range images {
		if n := pullCounting(t, emu, p, im.ref, im); n == 0 {
			t.Errorf("cold pull of %s: no blob fetched from ECR", im.ref)
		}
		c.checkSettledBound(t, maxsize, fmt.Sprintf("after pull %d (%s)", i, im.ref))
	}
	stop(t, p)
	c.checkBound(t, maxsize, "after the proxy stopped")

	last, first := images[len(images)-1], images[0]
	if _, missing := c.cached(t, last.blobs); len(missing) > 0 {
		t.Errorf("most recently pulled %s: blobs %v evicted", last.ref, missing)
	}
	if _, missing := c.cached(t, first.blobs); len(missing) == 0 {
		t.Fatalf("least recently pulled %s: nothing evicted from a cache of %d bytes", first.ref, c.dataBytes(t))
	}

	p = c.start(t)
	if n := pullCounting(t, emu, p, last.ref, last); n != 0 {
		t.Errorf("pull of the most recent image %s: %d blob GETs from ECR, want 0 (all counts %v)", last.ref, n, emu.Counts())
	}
	if n := pullCounting(t, emu, p, first.ref, first); n == 0 {
		t.Errorf("pull of the evicted image %s: no blob GET from ECR, want a refetch", first.ref)
	}
	// And by digest: the refetched image is whole.
	mustPull(t, p, first.repo()+"@"+first.want.digest, first.want.digest)
	c.checkSettledBound(t, maxsize, "after the refetch")
	stop(t, p)
	c.checkBound(t, maxsize, "after the second proxy stopped")
	if _, missing := c.cached(t, first.blobs); len(missing) > 0 {
		t.Errorf("refetched %s: blobs %v not cached again", first.ref, missing)
	}
}

// pullVerified pulls ref and checks everything a client reads against
// want: manifest bytes and digest, config bytes against the digest in the
// manifest (not empty), and every layer read to its end (go-containerregistry
// fails a layer whose bytes do not hash to its digest, or that is short).
func pullVerified(t *testing.T, p *proxytest.Proxy, ref string, want image) error {
	r, err := name.ParseReference(p.Addr+"/"+ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if d.String() != want.want.digest {
		return fmt.Errorf("digest %s, want %s", d, want.want.digest)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	if !bytes.Equal(raw, want.want.manifest) {
		return fmt.Errorf("manifest differs (%d bytes, want %d)", len(raw), len(want.want.manifest))
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	sum := sha256.Sum256(cfg)
	if got := "sha256:" + hex.EncodeToString(sum[:]); len(cfg) == 0 || got != want.blobs[1] {
		return fmt.Errorf("config: %d bytes hashing to %s, want %s", len(cfg), got, want.blobs[1])
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if len(layers) != len(want.want.layers) {
		return fmt.Errorf("%d layers, want %d", len(layers), len(want.want.layers))
	}
	for i, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			return err
		}
		if ld.String() != want.want.layers[i] {
			return fmt.Errorf("layer %d: %s, want %s", i, ld, want.want.layers[i])
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer %s: %w", ld, err)
		}
		n, err := io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", ld, err)
		}
		if n != size || n == 0 {
			return fmt.Errorf("layer %s: %d bytes, want %d", ld, n, size)
		}
	}
	return nil
}

// TestLRUConcurrentPullsDuringEviction has four clients pull eight images
// of about 2 MiB, two each, three rounds, through a cache bounded to 6 MiB,
// so that blobs are evicted while others are read and written. Every pull
// must return exactly the image's bytes: no wrong, short or empty manifest,
// config or layer.
func TestLRUConcurrentPullsDuringEviction(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	const (
		clients = 4
		perCli  = 2
		rounds  = 3
		maxsize = 6 * mib
	)
	images := make([][]image, clients)
	for c := range clients {
		for i := range perCli {
			images[c] = append(images[c], seedLRUImage(t, emu, fmt.Sprintf("team/conc%d-%d:1", c, i), 2, 1*mib))
		}
	}
	cache := newLRUCache(t, emu, "6m")
	p := cache.start(t)

	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for r := range rounds {
				for _, im := range images[c] {
					ref := im.ref
					if r%2 == 1 {
						ref = im.repo() + "@" + im.want.digest
					}
					if err := pullVerified(t, p, ref, im); err != nil {
						t.Errorf("client %d, round %d: pull %s: %v", c, r, ref, err)
					}
				}
			}
		})
	}
	wg.Wait()

	// Blobs are committed, and others evicted for them, after their
	// clients have read them: wait for the first eviction.
	evictions := waitForMetric(t, p, "ecrproxy_cache_evictions_total", "", func(v float64) bool { return v > 0 })
	if evictions <= 0 {
		t.Errorf("no blob evicted: the test did not exercise eviction")
	}
	t.Logf("evictions %v, blob GETs from ECR %d", evictions, emu.Count(ecrtest.KindBlobGET))
	cache.checkSettledBound(t, maxsize, "after the concurrent pulls")
	stop(t, p)
	cache.checkBound(t, maxsize, "after the proxy stopped")
}

// backdate sets the modification time of the cached data of im's blobs,
// which is where the cache records a blob's last use.
func (c *lruCache) backdate(t *testing.T, im image, when time.Time) {
	t.Helper()
	for _, d := range im.blobs {
		if err := os.Chtimes(c.blobDataPath(d), when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLRURestartKeepsOrder: a restarted proxy keeps the cache and the
// order of last use, including a use made by the previous process. A, B
// and C (about 3 MiB each) fill most of a 10 MiB cache; A is pulled again
// in a second process; in a third, D forces an eviction, which takes B,
// the least recently used, and keeps A and C.
//
// The driver records a use in the data file's modification time, at most
// once a minute per blob (lrufs TouchInterval). So that the second pull of
// A is more than a minute after its first, the test ages the three images
// between the first and second process, by setting those times back by
// hours, in pull order, as if they had been pulled hours ago.
func TestLRURestartKeepsOrder(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	a := seedLRUImage(t, emu, "team/a:1", 2, 1536<<10)
	b := seedLRUImage(t, emu, "team/b:1", 2, 1536<<10)
	cc := seedLRUImage(t, emu, "team/c:1", 2, 1536<<10)
	d := seedLRUImage(t, emu, "team/d:1", 2, 1536<<10)
	const maxsize = 10 * mib
	c := newLRUCache(t, emu, "10m")

	p := c.start(t)
	for _, im := range []image{a, b, cc} {
		mustPull(t, p, im.ref, im.want.digest)
	}
	stop(t, p)
	for _, im := range []image{a, b, cc} {
		if _, missing := c.cached(t, im.blobs); len(missing) > 0 {
			t.Fatalf("%s not cached whole after the first process: %v missing", im.ref, missing)
		}
	}
	now := time.Now()
	c.backdate(t, a, now.Add(-3*time.Hour))
	c.backdate(t, b, now.Add(-2*time.Hour))
	c.backdate(t, cc, now.Add(-1*time.Hour))

	// Second process: A is used again, from the cache.
	p = c.start(t)
	if n := pullCounting(t, emu, p, a.ref, a); n != 0 {
		t.Errorf("second process, pull %s: %d blob GETs from ECR, want 0 (the cache survives a restart)", a.ref, n)
	}
	stop(t, p)

	// Third process: D needs room.
	p = c.start(t)
	if n := pullCounting(t, emu, p, d.ref, d); n == 0 {
		t.Errorf("pull %s: no blob fetched from ECR", d.ref)
	}
	stop(t, p)
	c.checkBound(t, maxsize, "after D")
	for _, im := range []image{a, cc, d} {
		if _, missing := c.cached(t, im.blobs); len(missing) > 0 {
			t.Errorf("%s: blobs %v evicted, want only B's", im.ref, missing)
		}
	}
	if _, missing := c.cached(t, b.blobs); len(missing) == 0 {
		t.Errorf("B (least recently used) still cached whole; the eviction took something else")
	}

	// The clients see the same: A and C from the cache, B from ECR.
	p = c.start(t)
	for _, im := range []image{a, cc} {
		if n := pullCounting(t, emu, p, im.ref, im); n != 0 {
			t.Errorf("pull %s after D: %d blob GETs from ECR, want 0", im.ref, n)
		}
	}
	if n := pullCounting(t, emu, p, b.ref, b); n == 0 {
		t.Errorf("pull %s after D: no blob GET from ECR, want a refetch of the evicted blobs", b.ref)
	}
}

// leftovers lists what lies outside the cache's bound: spool files and
// upload directories.
func (c *lruCache) leftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	spools, err := os.ReadDir(filepath.Join(c.dir, "ecr-proxy-spool"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, s := range spools {
		out = append(out, "spool "+s.Name())
	}
	err = filepath.WalkDir(filepath.Join(c.dir, "docker", "registry", "v2", "repositories"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && filepath.Base(filepath.Dir(p)) == "_uploads" {
			out = append(out, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// TestNothingLeftOutsideTheBound: pulls of a blob larger than maxsize
// stream it to the client and leave no file behind; spool files and
// uploads a killed process left are removed when the proxy starts.
func TestNothingLeftOutsideTheBound(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dgst, want := seedLayer(t, emu, "team/big:1", 2*mib)
	c := newLRUCache(t, emu, "1m")
	p := c.start(t)
	for i := range 3 {
		resp := getBlob(t, p, "team/big", dgst)
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("pull %d of a blob larger than maxsize: %d bytes, %v", i, len(b), err)
		}
	}
	// Each pull's download was streamed without caching, and counted.
	if got := waitForMetric(t, p, "ecrproxy_cache_uncached_total", `reason="too_large"`, func(v float64) bool { return v >= 3 }); got != 3 {
		t.Errorf(`ecrproxy_cache_uncached_total{reason="too_large"} = %v, want 3`, got)
	}
	stop(t, p) // waits for the downloads to be given up
	if left := c.leftovers(t); len(left) != 0 {
		t.Errorf("after pulls of a blob over the bound: %v", left)
	}

	// What a kill -9 mid-download and mid-push leaves.
	spool := filepath.Join(c.dir, "ecr-proxy-spool")
	upload := filepath.Join(c.dir, "docker", "registry", "v2", "repositories", "team", "big", "_uploads", "0b1c")
	for _, f := range []string{filepath.Join(spool, "ecr-proxy-blob-123"), filepath.Join(spool, "ecr-proxy-push-456"), filepath.Join(upload, "data")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(spool, "not-ours")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	if left := c.leftovers(t); len(left) != 1 || left[0] != "spool not-ours" {
		t.Errorf("after a restart: %v, want only the file that is not the proxy's", left)
	}
}

// TestDownloadInFlightCountsAndKillLeavesNothing: a download's room
// counts against maxsize from its start, through the binary: with the
// cache full of blobs nobody reads, the least recently used one is evicted
// before the spool of a new blob holds its first bytes, and cached plus
// reserved bytes stay within maxsize while the download runs. Killed
// (SIGKILL) mid-download, the proxy leaves its spool; the next start
// removes it, and the blob then pulls whole.
func TestDownloadInFlightCountsAndKillLeavesNothing(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	oldDgst, _ := seedLayer(t, emu, "team/old:1", mib)
	midDgst, _ := seedLayer(t, emu, "team/mid:1", mib)
	newDgst, newBlob := seedLayer(t, emu, "team/new:1", 2*mib)
	const maxSize = 3 * mib
	c := newLRUCache(t, emu, "3m")
	p := c.start(t)
	for _, b := range []struct{ repo, dgst string }{{"team/old", oldDgst}, {"team/mid", midDgst}} {
		if err := getBlobChecked(t.Context(), p, b.repo, digest.Digest(b.dgst)); err != nil {
			t.Fatalf("pull %s: %v", b.repo, err)
		}
		if !pollUntil(t, func() bool { have, _ := c.cached(t, []string{b.dgst}); return len(have) == 1 }) {
			t.Fatalf("%s never cached", b.repo)
		}
	}

	release := emu.StallBlobs(512 << 10) // the new blob's body stops after 512 KiB
	t.Cleanup(release)
	body := startBlobGET(t, p, "team/new", digest.Digest(newDgst))
	if !pollUntil(t, func() bool { return spoolBytes(t, c.dir) == 512<<10 }) {
		t.Fatalf("the download's spool never reached 512 KiB (spools hold %d bytes)", spoolBytes(t, c.dir))
	}
	if have, _ := c.cached(t, []string{oldDgst}); len(have) != 0 {
		t.Error("the least recently used blob is still cached: the download's room was not made before its spool was written")
	}
	text := scrape(t, p)
	reserved, size := metric(text, "ecrproxy_cache_reserved_bytes", ""), metric(text, "ecrproxy_cache_size_bytes", "")
	if reserved != float64(len(newBlob)) {
		t.Errorf("ecrproxy_cache_reserved_bytes = %v while the download runs, want its size %d", reserved, len(newBlob))
	}
	if size < 0 || size+reserved > maxSize {
		t.Errorf("cached %v + reserved %v bytes, over maxsize %d", size, reserved, maxSize)
	}
	if n := c.dataBytes(t) + spoolBytes(t, c.dir); n > maxSize {
		t.Errorf("blob data plus spool on disk = %d bytes, over maxsize %d", n, maxSize)
	}

	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait()
	if _, err := io.Copy(io.Discard, body); err == nil {
		t.Error("the client's body ended cleanly with its proxy killed; want a cut")
	}
	if left := c.leftovers(t); len(left) == 0 {
		t.Fatal("the killed download left no spool: the test did not kill it mid-download")
	}
	release()
	p = c.start(t)
	if left := c.leftovers(t); len(left) != 0 {
		t.Errorf("after a restart, left from the killed download: %v", left)
	}
	if err := getBlobChecked(t.Context(), p, "team/new", digest.Digest(newDgst)); err != nil {
		t.Errorf("pull after the restart: %v", err)
	}
}
