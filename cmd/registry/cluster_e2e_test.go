package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// End-to-end tests of several replicas sharing one cache: an S3 bucket,
// bounded by the redislru middleware with its index in Redis.

// clusterCache is an S3 cache bounded cluster-wide through Redis.
type clusterCache struct {
	*s3Cache
	redis *enginetest.Redis
	rdb   *redis.Client
	// lruKey is the index's sorted set in Redis.
	lruKey string
}

// newClusterCache starts S3 and Redis and writes the configuration of
// replicas bounded to maxsize (with every use recorded, and no grace, so
// that the order is exact).
func newClusterCache(t *testing.T, emu *ecrtest.Emulator, maxsize string) *clusterCache {
	t.Helper()
	r := enginetest.StartRedis(t)
	c := &clusterCache{redis: r, lruKey: "{ecr-proxy:s3://ecr-proxy-cache/cache}:lru"}
	c.s3Cache = newS3Cache(t, emu, proxytest.ConfigOptions{Extra: fmt.Sprintf(`redis:
  addrs: [%s]
middleware:
  storage:
    - name: redislru
      options:
        maxsize: %s
        lowwater: 0.9
        touchinterval: 0s
        evictgrace: 0s
`, r.Addr(), maxsize)})
	c.rdb = redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = c.rdb.Close() })
	return c
}

// waitIndexed waits until the index has every blob in digests.
func (c *clusterCache) waitIndexed(t *testing.T, digests []string) {
	t.Helper()
	ok := pollUntil(t, func() bool {
		for _, d := range digests {
			if c.rdb.ZScore(t.Context(), c.lruKey, strings.Replace(d, ":", "/", 1)).Err() != nil {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("blobs %v never entered the shared index", digests)
	}
}

// bucketBlobBytes is the blob data in the bucket, read with
// distribution's own s3 driver.
func (c *clusterCache) bucketBlobBytes(t *testing.T) int64 {
	t.Helper()
	var total int64
	err := c.bucket(t).Walk(context.WithoutCancel(t.Context()), "/docker/registry/v2/blobs", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && strings.HasSuffix(fi.Path(), "/data") {
			total += fi.Size()
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		t.Fatal(err)
	}
	return total
}

// TestClusterBoundAcrossReplicas: three replicas pull in turn into one
// bucket bounded to 7 MiB (three images); the bucket stays under the
// bound, the image one replica used again survives, and the oldest
// unused one is evicted.
func TestClusterBoundAcrossReplicas(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	imgs := make([]pulled, 4)
	for i := range imgs {
		_, imgs[i] = seedImageContent(t, emu, fmt.Sprintf("team/app:%d", i), 2, mib, types.OCIManifestSchema1)
	}
	c := newClusterCache(t, emu, "7m")
	ps := []*proxytest.Proxy{c.start(t), c.start(t), c.start(t)}

	pull := func(p *proxytest.Proxy, i int) {
		t.Helper()
		mustPull(t, p, fmt.Sprintf("team/app:%d", i), imgs[i].digest)
		c.waitIndexed(t, imgs[i].layers)
	}
	pull(ps[0], 0)
	pull(ps[1], 1)
	pull(ps[2], 2)
	before := emu.Count(ecrtest.KindBlobGET)
	pull(ps[1], 0) // a hit through another replica: 0 is now more recent than 1 and 2
	if got := emu.Count(ecrtest.KindBlobGET); got != before {
		t.Errorf("pulling image 0 again through another replica: %d ECR blob GETs, want none", got-before)
	}
	pull(ps[0], 3) // over the bound: evicts the least recently used, image 1
	evictions := 0.0
	for _, p := range ps {
		m := scrape(t, p)
		evictions += metric(m, "ecrproxy_shared_cache_evictions_total", "")
		if size := metric(m, "ecrproxy_shared_cache_size_bytes", ""); size <= 0 || size > 7*mib {
			t.Errorf("ecrproxy_shared_cache_size_bytes = %v, want the cluster's total, under 7 MiB", size)
		}
	}
	if evictions < 3 {
		t.Errorf("ecrproxy_shared_cache_evictions_total summed over the replicas = %v, want image 1's blobs at least", evictions)
	}
	for _, p := range ps {
		stop(t, p)
	}
	if got := c.bucketBlobBytes(t); got > 7*mib {
		t.Errorf("bucket holds %d bytes of blob data, over the cluster-wide bound of %d", got, 7*mib)
	}

	p := c.start(t)
	for _, tc := range []struct {
		image   int
		wantHit bool
	}{{0, true}, {3, true}, {2, true}, {1, false}} {
		before := emu.Count(ecrtest.KindBlobGET)
		mustPull(t, p, fmt.Sprintf("team/app@%s", imgs[tc.image].digest), imgs[tc.image].digest)
		fetched := emu.Count(ecrtest.KindBlobGET) - before
		if tc.wantHit && fetched != 0 {
			t.Errorf("image %d: %d ECR blob GETs, want 0 (kept in the bucket)", tc.image, fetched)
		}
		if !tc.wantHit && fetched < 2 {
			t.Errorf("image %d: %d ECR blob GETs, want its 2 layers fetched again (evicted)", tc.image, fetched)
		}
	}
}

// TestGarbageCollectSharedCache: garbage-collect on the shared bucket
// deletes what nothing references, and the Redis index loses those blobs
// with it (distribution's command bypasses the storage middleware).
func TestGarbageCollectSharedCache(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digest := seedImage(t, emu, "team/app:1.0", 2, mib, types.OCIManifestSchema1)
	c := newClusterCache(t, emu, "100m")
	p := c.start(t)
	mustPull(t, p, "team/app@"+digest, digest) // no local tag: untagged
	stop(t, p)
	if n := c.rdb.ZCard(t.Context(), c.lruKey).Val(); n < 3 {
		t.Fatalf("%d blobs indexed after the pull, want the manifest, config and 2 layers", n)
	}

	cmd := exec.CommandContext(t.Context(), proxyBinary, "garbage-collect", "--delete-untagged", c.cfgPath) //nolint:gosec // the test's own binary
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "AWS_EC2_METADATA_DISABLED=true"}, hermeticEnv(t)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("garbage-collect: %v\n%s", err, out)
	}
	if got := c.bucketBlobBytes(t); got != 0 {
		t.Errorf("bucket holds %d bytes of blob data after garbage-collect, want 0\n%s", got, out)
	}
	if n := c.rdb.ZCard(t.Context(), c.lruKey).Val(); n != 0 {
		t.Errorf("%d blobs still indexed after garbage-collect deleted them all\n%s", n, out)
	}
	if total := c.rdb.Get(t.Context(), "{ecr-proxy:s3://ecr-proxy-cache/cache}:total").Val(); total != "0" {
		t.Errorf("index total %q after garbage-collect, want 0", total)
	}
}

// pullRoundRobin pulls ref through the proxies, client i through proxy
// i%len(ps), all at once, and returns the errors.
func pullRoundRobin(t *testing.T, ps []*proxytest.Proxy, clients int, ref, digest string) []error {
	t.Helper()
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			got, err := pullImage(t.Context(), ps[i%len(ps)], ref)
			if err == nil && got.digest != digest {
				err = fmt.Errorf("digest %s, want %s", got.digest, digest)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errs
}

// TestClusterSingleFlight: 30 clients pull the same cold image at once,
// spread round-robin over three replicas sharing a bucket and Redis: ECR
// serves each blob once, and every client gets every byte (go-containerregistry
// checks each blob's digest as it reads).
func TestClusterSingleFlight(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digest := seedImage(t, emu, "team/app:1.0", 3, 4*mib, types.OCIManifestSchema1)
	c := newClusterCache(t, emu, "1g")
	ps := []*proxytest.Proxy{c.start(t), c.start(t), c.start(t)}

	for i, err := range pullRoundRobin(t, ps, 30, "team/app:1.0", digest) {
		if err != nil {
			t.Errorf("client %d (replica %d): %v", i, i%3, err)
		}
	}
	if got := emu.Count(ecrtest.KindBlobGET); got != 4 {
		t.Errorf("%d ECR blob GETs for 30 clients over 3 replicas, want 4: one per blob (3 layers and the config)", got)
	}
	forwarded := 0.0
	for _, p := range ps {
		forwarded += metric(scrape(t, p), "ecrproxy_cluster_forwards_total", `result="forwarded"`)
	}
	if forwarded < 1 {
		t.Errorf("ecrproxy_cluster_forwards_total{result=\"forwarded\"} summed over the replicas = %v, want the GETs of blobs other replicas downloaded", forwarded)
	}
}

// startBlobGET sends a GET of repo@dgst to p and returns the response
// body once its first byte has arrived, the rest still unread; it is
// closed at cleanup.
func startBlobGET(t *testing.T, p *proxytest.Proxy, repo string, dgst digest.Digest) io.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL()+"/v2/"+repo+"/blobs/"+dgst.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET blob through %s: %v", p.Addr, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET blob through %s: %s", p.Addr, resp.Status)
	}
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("GET blob through %s: first byte: %v", p.Addr, err)
	}
	return resp.Body
}

// getBlobChecked reads repo@dgst through p whole and checks its digest.
func getBlobChecked(ctx context.Context, p *proxytest.Proxy, repo string, dgst digest.Digest) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/v2/"+repo+"/blobs/"+dgst.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	v := dgst.Verifier()
	if _, err := io.Copy(v, resp.Body); err != nil {
		return err
	}
	if !v.Verified() {
		return errors.New("body does not match its digest")
	}
	return nil
}

// TestClusterOwnerKilled: the replica that owns a cold blob's download is
// killed (SIGKILL) midway while clients on the other replicas read it
// through forwarding: they get a cut (never a short body that looks
// complete), their retries succeed, and ECR serves the blob once more.
func TestClusterOwnerKilled(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	content := make([]byte, 8*mib)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	dgst, err := emu.SeedBlob(t.Context(), "team/app", content, digest.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	c := newClusterCache(t, emu, "1g")
	owner, b, d := c.start(t), c.start(t), c.start(t)
	release := emu.StallBlobs(mib) // the download stops after 1 MiB
	t.Cleanup(release)

	bodies := []io.Reader{startBlobGET(t, owner, "team/app", dgst)} // the owner claims the download
	for _, p := range []*proxytest.Proxy{b, d} {
		bodies = append(bodies, startBlobGET(t, p, "team/app", dgst)) // forwarded: bytes from the owner's download
	}
	if got := emu.Count(ecrtest.KindBlobGET); got != 1 {
		t.Fatalf("%d ECR blob GETs with three clients on three replicas, want 1", got)
	}
	if err := syscall.Kill(owner.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	for i, body := range bodies {
		if n, err := io.Copy(io.Discard, body); err == nil {
			t.Errorf("client %d: body ended cleanly after %d more bytes with its replica's source killed; want a cut", i, n)
		}
	}
	release()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []*proxytest.Proxy{b, d} {
		wg.Go(func() { errs[i] = getBlobChecked(t.Context(), p, "team/app", dgst) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("retry %d: %v", i, err)
		}
	}
	if got := emu.Count(ecrtest.KindBlobGET); got != 2 {
		t.Errorf("%d ECR blob GETs in all, want 2: the killed owner's and one taken over", got)
	}
}

// TestClusterSharedTagWindow: with ecr.tagttl, a tag one replica checked
// with ECR is served by the others without asking ECR again.
func TestClusterSharedTagWindow(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digest := seedImage(t, emu, "team/app:1.0", 1, 1024, types.OCIManifestSchema1)
	r := enginetest.StartRedis(t)
	c := &clusterCache{redis: r}
	c.s3Cache = newS3Cache(t, emu, proxytest.ConfigOptions{
		ECRExtra: []string{"tagttl: 1h"},
		Extra:    fmt.Sprintf("redis:\n  addrs: [%s]\n", r.Addr()),
	})
	ps := []*proxytest.Proxy{c.start(t), c.start(t), c.start(t)}

	mustPull(t, ps[0], "team/app:1.0", digest)
	checks := emu.Count(ecrtest.KindManifestHEAD)
	if checks != 1 {
		t.Fatalf("first pull of the tag: %d ECR manifest HEADs, want 1", checks)
	}
	for _, p := range ps[1:] {
		mustPull(t, p, "team/app:1.0", digest)
	}
	if got := emu.Count(ecrtest.KindManifestHEAD); got != checks {
		t.Errorf("pulls of the tag through the other replicas within the window: %d more ECR manifest HEADs, want none", got-checks)
	}
}

// TestClusterS3Down: with the bucket unreachable, a pull of content
// cached nowhere gets an honest 503 that names the cache storage, at
// once, and the log says why.
func TestClusterS3Down(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	_, img := seedImageContent(t, emu, "team/app:1.0", 1, 1024, types.OCIManifestSchema1)
	c := newClusterCache(t, emu, "1g")
	p := c.start(t)
	c.s3.Stop()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, path := range []string{"/v2/team/app/blobs/" + img.layers[0], "/v2/team/app/manifests/1.0", "/v2/team/app/manifests/" + img.digest} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s with S3 down: %v (want an answer, not a hang)", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "cache storage") {
			t.Errorf("GET %s with S3 down: %s %s, want 503 naming the cache storage", path, resp.Status, body)
		}
		if strings.Contains(string(body), c.s3.Addr()) {
			t.Errorf("GET %s: the answer names the internal S3 address: %s", path, body)
		}
	}
	// The log says why: the cache storage, with the driver's error.
	why := false
	for _, l := range p.Lines() {
		why = why || strings.Contains(l, "the cache storage is unavailable") && strings.Contains(l, "connection refused")
	}
	if !why {
		t.Errorf("no log line says the cache storage is unavailable and why (the driver's error):\n%s", p.Logs())
	}
	if strings.Contains(p.Logs(), "cache-secret") {
		t.Error("the bucket's secret key (storage.s3.secretkey) shows in the log")
	}
}

// TestClusterRedisDown: Redis stopped mid-run; pulls through every
// replica go on (each downloads for itself), /readyz says degraded and
// stays 200, and the loss is logged once per replica.
func TestClusterRedisDown(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	before := seedImage(t, emu, "team/app:1.0", 2, mib, types.OCIManifestSchema1)
	after := seedImage(t, emu, "team/app:2.0", 2, mib, types.OCIManifestSchema1)
	c := newClusterCache(t, emu, "1g")
	ps := []*proxytest.Proxy{c.start(t), c.start(t), c.start(t)}
	mustPull(t, ps[0], "team/app:1.0", before)

	c.redis.Stop()
	fetched := emu.Count(ecrtest.KindBlobGET)
	for i, err := range pullRoundRobin(t, ps, 6, "team/app:2.0", after) {
		if err != nil {
			t.Errorf("client %d with Redis down: %v", i, err)
		}
	}
	// Each replica's own single flight: a blob is fetched at most once
	// per replica (3 blobs, 3 replicas), however many of its clients ask.
	if got := emu.Count(ecrtest.KindBlobGET) - fetched; got < 3 || got > 9 {
		t.Errorf("%d ECR blob GETs for 6 clients on 3 replicas with Redis down, want 3 to 9: at most one per blob per replica", got)
	}
	mustPull(t, ps[2], "team/app:1.0", before)
	for i, p := range ps {
		resp, err := http.Get(p.URL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"redis":"degraded"`) {
			t.Errorf("replica %d /readyz with Redis down: %s %s, want 200 with redis degraded", i, resp.Status, body)
		}
		if n := strings.Count(p.Logs(), "redis unavailable:"); n != 1 {
			t.Errorf("replica %d logged the loss of Redis %d times, want once (for the downloads, the tag window and the bound)", i, n)
		}
	}

	// Redis comes back empty: the index is rebuilt from the bucket, with
	// the blobs pulled meanwhile.
	if err := c.redis.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !pollUntil(t, func() bool {
		mustPull(t, ps[1], "team/app:2.0", after)            // uses Redis, which is found back
		return c.rdb.ZCard(t.Context(), c.lruKey).Val() == 8 // 2 images: 2 layers, a config and a manifest each
	}) {
		t.Errorf("the index holds %d blobs after Redis came back empty, want the 8 in the bucket", c.rdb.ZCard(t.Context(), c.lruKey).Val())
	}
}

// TestClusterRedirects: with storage.redirect enabled, a blob hit is
// answered with a redirect to a presigned URL of the bucket, so its bytes
// skip the proxy; a client following it gets the right bytes.
func TestClusterRedirects(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digest, img := seedImageContent(t, emu, "team/app:1.0", 1, mib, types.OCIManifestSchema1)
	c := newS3Cache(t, emu, proxytest.ConfigOptions{StorageParams: map[string]string{}})
	cfg, err := os.ReadFile(c.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Redirects are off unless asked for.
	cfg = []byte(strings.Replace(string(cfg), "storage:\n", "storage:\n  redirect:\n    disable: false\n", 1))
	if err := os.WriteFile(c.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p := c.start(t)
	mustPull(t, p, "team/app:1.0", digest) // cold: streamed, then committed
	stop(t, p)
	p = c.start(t)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(p.URL() + "/v2/team/app/blobs/" + img.layers[0])
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, c.s3.Endpoint()+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("blob hit with redirects on: %s Location %q, want 307 to a presigned URL of the bucket", resp.Status, loc)
	}
	before := emu.Count(ecrtest.KindBlobGET)
	mustPull(t, p, "team/app:1.0", digest) // go-containerregistry follows, and checks every digest
	if got := emu.Count(ecrtest.KindBlobGET); got != before {
		t.Errorf("pull of cached content with redirects: %d ECR blob GETs, want none", got-before)
	}
}

// TestClusterNoRedirectsByDefault: without storage.redirect, blob hits
// from the bucket are served by the proxy itself.
func TestClusterNoRedirectsByDefault(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digest, img := seedImageContent(t, emu, "team/app:1.0", 1, 1024, types.OCIManifestSchema1)
	c := newS3Cache(t, emu, proxytest.ConfigOptions{})
	p := c.start(t)
	mustPull(t, p, "team/app:1.0", digest)
	stop(t, p)
	p = c.start(t)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(p.URL() + "/v2/team/app/blobs/" + img.layers[0])
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache-Status") != "HIT" {
		t.Errorf("blob hit without storage.redirect: %s, X-Cache-Status %q; want 200 HIT from the proxy", resp.Status, resp.Header.Get("X-Cache-Status"))
	}
}

// ownerDownloading starts two replicas and a 4 MiB blob's download on the
// first, stalled after 1 MiB until release; it returns the emulator, the
// blob, and the other replica.
func ownerDownloading(t *testing.T) (emu *ecrtest.Emulator, content []byte, dgst digest.Digest, other *proxytest.Proxy, release func()) {
	t.Helper()
	ecrtest.ClearAWSEnv(t)
	emu = ecrtest.New(t)
	content = make([]byte, 4*mib)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	dgst, err := emu.SeedBlob(t.Context(), "team/app", content, digest.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	c := newClusterCache(t, emu, "1g")
	owner := c.start(t)
	other = c.start(t)
	release = emu.StallBlobs(mib)
	t.Cleanup(release)
	startBlobGET(t, owner, "team/app", dgst) // the owner claims the download
	return emu, content, dgst, other, release
}

// TestClusterForwardedRange: a Range GET on one replica of a blob another
// replica is downloading gets its 206 from the owner's download as soon
// as its bytes have arrived, long before the download ends.
func TestClusterForwardedRange(t *testing.T) {
	emu, content, dgst, other, release := ownerDownloading(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, other.URL()+"/v2/team/app/blobs/"+dgst.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err := http.DefaultClient.Do(req) // headers at once, the download stalled
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("forwarded Range: %s, want 206", resp.Status)
	}
	// All but the last byte arrive before the download ends; the last
	// waits for the blob's digest check.
	body := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, body[:999]); err != nil {
		t.Fatalf("read the range while the download stalls: %v", err)
	}
	release()
	if _, err := io.ReadFull(resp.Body, body[999:]); err != nil {
		t.Fatalf("last byte of the range: %v", err)
	}
	if string(body) != string(content[1000:2000]) {
		t.Error("forwarded Range: wrong bytes")
	}
	if got := emu.Count(ecrtest.KindBlobGET); got != 1 {
		t.Errorf("%d ECR blob GETs, want 1", got)
	}
}

// TestClusterForwardedMarkFromClient: a client that marks its request as
// forwarded between replicas (pullthrough.ForwardedHeader) without the
// cluster's secret is handled as any client: its replica forwards it to
// the owner of the download instead of fetching the blob from ECR again.
func TestClusterForwardedMarkFromClient(t *testing.T) {
	emu, content, dgst, other, release := ownerDownloading(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, other.URL()+"/v2/team/app/blobs/"+dgst.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Ecr-Proxy-Forwarded", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET with a forged forwarded mark: %s", resp.Status)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if got := emu.Count(ecrtest.KindBlobGET); got != 1 {
		t.Errorf("%d ECR blob GETs with a client's forged forwarded mark, want 1: its replica forwards it to the owner", got)
	}
	release()
	v := dgst.Verifier()
	if _, err := v.Write(content[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(v, resp.Body); err != nil || !v.Verified() {
		t.Errorf("forwarded body: %v, verified %v", err, v.Verified())
	}
	if got := metric(scrape(t, other), "ecrproxy_cluster_forwards_total", `result="forwarded"`); got != 1 {
		t.Errorf("forwards from the client's replica: %v, want 1", got)
	}
}

// TestClusterReplicaRestart: a replica killed (SIGKILL) and started again
// serves what the cluster cached at once, as hits: its first request
// after the start is a HIT, its pull asks ECR for no blob, and the
// shared index is not rebuilt (it holds the same blobs).
func TestClusterReplicaRestart(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digest, img := seedImageContent(t, emu, "team/app:1.0", 2, mib, types.OCIManifestSchema1)
	c := newClusterCache(t, emu, "1g")
	p := c.start(t)
	mustPull(t, p, "team/app:1.0", digest)
	c.waitIndexed(t, img.layers)
	indexed := c.rdb.ZCard(t.Context(), c.lruKey).Val()
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait()

	before := emu.Count(ecrtest.KindBlobGET)
	p = c.start(t)
	resp, err := http.Get(p.URL() + "/v2/team/app/blobs/" + img.layers[0])
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache-Status") != "HIT" {
		t.Errorf("first blob GET after the restart: %s, X-Cache-Status %q; want 200 HIT", resp.Status, resp.Header.Get("X-Cache-Status"))
	}
	mustPull(t, p, "team/app@"+digest, digest)
	if got := emu.Count(ecrtest.KindBlobGET) - before; got != 0 {
		t.Errorf("pull through the restarted replica: %d ECR blob GETs, want 0 (all in the bucket)", got)
	}
	if strings.Contains(p.Logs(), "rebuilt the shared cache index") {
		t.Error("the restarted replica rebuilt the shared index")
	}
	if got := c.rdb.ZCard(t.Context(), c.lruKey).Val(); got != indexed {
		t.Errorf("the index holds %d blobs after the restart, want the same %d", got, indexed)
	}
}

// TestClusterRedisPassword: REDIS_PASSWORD reaches a Redis that requires
// one (the replicas share the index and their downloads through it); a
// wrong one degrades the replica, which goes on serving, and the password
// shows in neither its log nor /readyz.
func TestClusterRedisPassword(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digest, img := seedImageContent(t, emu, "team/app:1.0", 2, mib, types.OCIManifestSchema1)
	const password, wrong = "redis-pass-7f3a91", "wrong-pass-c05e28"
	r := enginetest.StartRedis(t, "--requirepass", password)
	c := &clusterCache{redis: r, lruKey: "{ecr-proxy:s3://ecr-proxy-cache/cache}:lru"}
	c.s3Cache = newS3Cache(t, emu, proxytest.ConfigOptions{Extra: fmt.Sprintf(
		"redis:\n  addrs: [%s]\nmiddleware:\n  storage:\n    - name: redislru\n      options:\n        maxsize: 1g\n        touchinterval: 0s\n", r.Addr())})
	c.rdb = redis.NewClient(&redis.Options{Addr: r.Addr(), Password: password})
	t.Cleanup(func() { _ = c.rdb.Close() })
	withPassword := func(pw string) *proxytest.Proxy {
		return runProxy(t, []string{"serve", c.cfgPath}, append(c.emu.Env(), "REDIS_PASSWORD="+pw))
	}

	ps := []*proxytest.Proxy{withPassword(password), withPassword(password)}
	for i, err := range pullRoundRobin(t, ps, 4, "team/app:1.0", digest) {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if got := emu.Count(ecrtest.KindBlobGET); got != 3 {
		t.Errorf("%d ECR blob GETs for 4 clients on 2 replicas, want 3 (one per blob): the downloads were not shared", got)
	}
	c.waitIndexed(t, img.layers)

	bad := withPassword(wrong)
	mustPull(t, bad, "team/app@"+digest, digest)
	resp, err := http.Get(bad.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"redis":"degraded"`) {
		t.Errorf("/readyz with a wrong Redis password: %s %s, want 200 with redis degraded", resp.Status, body)
	}
	for _, p := range append(ps, bad) {
		for _, pw := range []string{password, wrong} {
			if strings.Contains(p.Logs(), pw) || strings.Contains(string(body), pw) {
				t.Errorf("a Redis password shows in a replica's log or /readyz")
			}
		}
	}
}

// TestClusterRedisStoppedMidDownload: Redis is stopped while one replica
// downloads a cold blob for its client and a client of another replica
// reads it through forwarding; both complete with every byte, and a
// later client of the other replica is served too (by its own download).
func TestClusterRedisStoppedMidDownload(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	content := make([]byte, 4*mib)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	dgst, err := emu.SeedBlob(t.Context(), "team/app", content, digest.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	c := newClusterCache(t, emu, "1g")
	owner, other := c.start(t), c.start(t)
	release := emu.StallBlobs(mib) // the download stops after 1 MiB until released
	t.Cleanup(release)
	bodies := []io.Reader{startBlobGET(t, owner, "team/app", dgst), startBlobGET(t, other, "team/app", dgst)}
	if got := emu.Count(ecrtest.KindBlobGET); got != 1 {
		t.Fatalf("%d ECR blob GETs with two clients on two replicas, want 1 (the other forwarded)", got)
	}

	c.redis.Stop()
	release()
	for i, body := range bodies {
		rest, err := io.ReadAll(body)
		if err != nil || len(rest) != len(content)-1 || !bytes.Equal(rest, content[1:]) {
			t.Errorf("client %d with Redis stopped mid-download: %d more bytes, %v; want the rest of the blob", i, len(rest), err)
		}
	}
	if err := getBlobChecked(t.Context(), other, "team/app", dgst); err != nil {
		t.Errorf("a later client of the other replica with Redis down: %v", err)
	}
}
