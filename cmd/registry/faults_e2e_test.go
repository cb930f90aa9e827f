package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// seedLayer seeds a one-layer image and returns the layer's digest and bytes.
func seedLayer(t *testing.T, emu *ecrtest.Emulator, ref string, size int64) (string, []byte) {
	t.Helper()
	img, err := ecrtest.RandomImage(1, size, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.Seed(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return layerBytes(t, layers[0])
}

func layerBytes(t *testing.T, l v1.Layer) (string, []byte) {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), b
}

// getBlob starts a GET of a blob through the proxy.
func getBlob(t *testing.T, p *proxytest.Proxy, repo, dgst string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL()+"/v2/"+repo+"/blobs/"+dgst, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET blob: %v", err)
	}
	return resp
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// TestConcurrentColdPulls: 20 clients pulling the same cold image cause
// one upstream download per blob, and all get correct bytes.
func TestConcurrentColdPulls(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 4, 2<<20, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := pullImage(t.Context(), p, "team/app:1"); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	// 4 layers and the config blob: one GET and one S3 download each.
	for _, k := range []ecrtest.Kind{ecrtest.KindBlobGET, ecrtest.KindS3GET} {
		if n := emu.Count(k); n != 5 {
			t.Errorf("%s = %d, want 5 (one per blob: 4 layers + config); counts %v", k, n, emu.Counts())
		}
	}
	emu.ResetCounts()
	mustPull(t, p, "team/app@"+d, d)
	if n := emu.Count(ecrtest.KindBlobGET); n != 0 {
		t.Errorf("after the concurrent pulls, a pull fetched %d blobs again", n)
	}
}

// TestClientsStreamBeforeDownloadEnds: with ECR's body stalled half way,
// every client has received the first half; once it resumes, all finish
// with the right bytes from a single download.
func TestClientsStreamBeforeDownloadEnds(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dgst, want := seedLayer(t, emu, "team/big:1", 4<<20)
	p := startProxy(t, emu, proxyOpts{})
	release := emu.StallBlobs(2 << 20)
	const clients = 20
	resps := make([]*http.Response, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			resp := getBlob(t, p, "team/big", dgst) //nolint:bodyclose // closed after the release below
			resps[i] = resp
			head := make([]byte, 1<<20)
			if _, err := io.ReadFull(resp.Body, head); err != nil {
				t.Errorf("client %d: first MiB while the download is stalled: %v", i, err)
			} else if !bytes.Equal(head, want[:1<<20]) {
				t.Errorf("client %d: wrong first MiB", i)
			}
		})
	}
	wg.Wait() // every client has its first MiB, and the download is stalled
	release()
	for i, resp := range resps {
		rest, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || sha(append(want[:1<<20:1<<20], rest...)) != dgst {
			t.Errorf("client %d: rest of the blob: %d bytes, %v", i, len(rest), err)
		}
	}
	if n := emu.Count(ecrtest.KindS3GET); n != 1 {
		t.Errorf("S3 downloads = %d, want 1", n)
	}
}

// TestOneClientDisconnects: 50 clients on one cold blob, one leaving
// mid-stream: the others complete; the blob is fetched once, cached once,
// whether lrufilesystem adopts the spool or it is copied through
// distribution's blob writer (filesystem).
func TestOneClientDisconnects(t *testing.T) {
	for _, driver := range []string{"lrufilesystem", "filesystem"} {
		t.Run(driver, func(t *testing.T) { testOneClientDisconnects(t, driver) })
	}
}

func testOneClientDisconnects(t *testing.T, driver string) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dgst, want := seedLayer(t, emu, "team/app:1", 3<<20)
	cache := t.TempDir()
	p := startProxy(t, emu, proxyOpts{cacheDir: cache, config: proxytest.ConfigOptions{StorageDriver: driver}})
	release := emu.StallBlobs(1 << 20)
	quitter := getBlob(t, p, "team/app", dgst)
	if _, err := io.ReadFull(quitter.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	_ = quitter.Body.Close() // leaves mid-stream
	var wg sync.WaitGroup
	for i := range 49 {
		wg.Go(func() {
			resp := getBlob(t, p, "team/app", dgst)
			defer resp.Body.Close()
			if i == 0 {
				release() // the first of the others lets the download go on
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("client %d: %d bytes, %v", i, len(b), err)
			}
		})
	}
	wg.Wait()
	if n := emu.Count(ecrtest.KindBlobGET); n != 1 {
		t.Errorf("upstream blob GETs = %d, want 1", n)
	}
	resp := getBlob(t, p, "team/app", dgst)
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || !bytes.Equal(b, want) || resp.Header.Get("X-Cache-Status") != "HIT" {
		t.Errorf("GET after the download: %d bytes, %v, X-Cache-Status %q; want the cached blob", len(b), err, resp.Header.Get("X-Cache-Status"))
	}
	if n := emu.Count(ecrtest.KindBlobGET); n != 1 {
		t.Errorf("upstream blob GETs after a cached read = %d, want 1", n)
	}
	// The download's spool went into the cache: nothing is left beside it.
	spool := filepath.Join(cache, "ecr-proxy-spool")
	if !pollUntil(t, func() bool { entries, err := os.ReadDir(spool); return err == nil && len(entries) == 0 }) {
		t.Errorf("%s still holds files after the download was cached", spool)
	}
}

// TestColdHeadAndRange: HEAD of a cold blob downloads nothing; a Range on
// a cold blob gets 206 with the right bytes, and the download it starts
// is cached.
func TestColdHeadAndRange(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dgst, want := seedLayer(t, emu, "team/app:1", 1<<20)
	p := startProxy(t, emu, proxyOpts{})

	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, p.URL()+"/v2/team/app/blobs/"+dgst, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(want)) || resp.Header.Get("Docker-Content-Digest") != dgst {
		t.Errorf("cold HEAD = %d, length %d, digest %q", resp.StatusCode, resp.ContentLength, resp.Header.Get("Docker-Content-Digest"))
	}
	if n := emu.Count(ecrtest.KindBlobGET) + emu.Count(ecrtest.KindS3GET); n != 0 {
		t.Errorf("cold HEAD downloaded: %v", emu.Counts())
	}

	resp = getBlob(t, p, "team/app", dgst, "Range", "bytes=1000-1999")
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, want[1000:2000]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", len(want)) {
		t.Errorf("cold Range = %d %q, %d bytes, %v", resp.StatusCode, resp.Header.Get("Content-Range"), len(b), err)
	}
	// The whole blob: from the download the Range started, not a new one.
	resp = getBlob(t, p, "team/app", dgst)
	b, err = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || !bytes.Equal(b, want) {
		t.Errorf("GET after the Range: %d bytes, %v", len(b), err)
	}
	if n := emu.Count(ecrtest.KindBlobGET); n != 1 {
		t.Errorf("upstream blob GETs = %d, want 1 (the Range's download was kept)", n)
	}
	resp = getBlob(t, p, "team/app", dgst, "Range", fmt.Sprintf("bytes=%d-", len(want)+10))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable Range = %d, want 416", resp.StatusCode)
	}
}

// TestColdGetAsksECROnce: a GET of a cold blob goes to ECR once, a GET
// (no HEAD first), and a blob ECR does not have is 404 BLOB_UNKNOWN.
func TestColdGetAsksECROnce(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dgst, want := seedLayer(t, emu, "team/app:1", 256<<10)
	p := startProxy(t, emu, proxyOpts{})
	emu.ResetCounts()
	resp := getBlob(t, p, "team/app", dgst)
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || !bytes.Equal(b, want) || resp.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("cold GET: %d bytes, %v, X-Cache-Status %q", len(b), err, resp.Header.Get("X-Cache-Status"))
	}
	if heads, gets := emu.Count(ecrtest.KindBlobHEAD), emu.Count(ecrtest.KindBlobGET); heads != 0 || gets != 1 {
		t.Errorf("upstream blob HEADs %d, GETs %d; want 0 and 1", heads, gets)
	}
	resp = getBlob(t, p, "team/app", sha([]byte("not in ECR")))
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "BLOB_UNKNOWN") {
		t.Errorf("GET of a blob ECR lacks: %d %s, want 404 BLOB_UNKNOWN", resp.StatusCode, body)
	}
}

// TestBrokenUpstreamBodies: a body ECR cuts off, or that stalls past the
// idle timeout, is an error for the client, never a complete-looking
// short body; nothing is cached, and the next pull succeeds.
func TestBrokenUpstreamBodies(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{ECRExtra: []string{"fetchidletimeout: 2s"}}})

	for i, fault := range []struct {
		name   string
		inject func() (undo func())
	}{
		{"cut after 1000 bytes", func() func() { emu.CutBlobs(1000); return func() { emu.CutBlobs(-1) } }},
		{"stalled past the idle timeout", func() func() { return emu.StallBlobs(1000) }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			// A blob of its own: the previous case cached its blob.
			dgst, want := seedLayer(t, emu, fmt.Sprintf("team/app:%d", i), 1<<20)
			before := emu.Count(ecrtest.KindBlobGET)
			undo := fault.inject()
			resp := getBlob(t, p, "team/app", dgst)
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			undo()
			if err == nil && resp.StatusCode == http.StatusOK {
				t.Fatalf("broken upstream body: client got %d bytes and no error", len(b))
			}
			if len(b) >= len(want) {
				t.Errorf("client got %d bytes of a broken %d-byte download", len(b), len(want))
			}
			resp = getBlob(t, p, "team/app", dgst)
			b, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || !bytes.Equal(b, want) {
				t.Fatalf("next pull: %d bytes, %v", len(b), err)
			}
			if n := emu.Count(ecrtest.KindBlobGET) - before; n != 2 {
				t.Errorf("upstream GETs = %d, want 2: nothing of the broken download was cached", n)
			}
		})
	}
}

// TestCorruptUpstreamBodyNeverCompletes: S3 serves a blob of the right
// length with one byte changed. No client, whole body, Range covering the
// end or Range in the middle, joined before or after the bad byte arrived,
// gets a complete response; nothing is cached, and the next pull, with S3
// healthy again, gets the right bytes.
func TestCorruptUpstreamBodyNeverCompletes(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	p := startProxy(t, emu, proxyOpts{})
	for i, where := range []string{"last", "101st"} {
		t.Run(where+" byte changed", func(t *testing.T) {
			// A blob of its own: the previous case cached its blob.
			dgst, want := seedLayer(t, emu, fmt.Sprintf("team/app:%d", i), 1<<20)
			size := int64(len(want))
			before := emu.Count(ecrtest.KindS3GET)
			if where == "last" {
				emu.CorruptBlobs(size - 1)
			} else {
				emu.CorruptBlobs(100)
			}
			release := emu.StallBlobs(size / 2)
			clients := []struct{ name, rng string }{
				{"GET", ""},
				{"second GET", ""},
				{"Range covering the end", fmt.Sprintf("bytes=%d-", size-1000)},
				{"Range in the middle", "bytes=1000-1999"},
			}
			resps := make([]*http.Response, len(clients))
			for i, c := range clients {
				if c.rng == "" {
					resps[i] = getBlob(t, p, "team/app", dgst) //nolint:bodyclose // closed below
				} else {
					resps[i] = getBlob(t, p, "team/app", dgst, "Range", c.rng) //nolint:bodyclose // closed below
				}
			}
			// Every client has its headers: all joined the one stalled download.
			release()
			for i, c := range clients {
				b, err := io.ReadAll(resps[i].Body)
				_ = resps[i].Body.Close()
				if err == nil {
					t.Errorf("%s: %d %d bytes, complete, of a body that fails its digest", c.name, resps[i].StatusCode, len(b))
				}
			}
			emu.CorruptBlobs(-1)
			resp := getBlob(t, p, "team/app", dgst)
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || !bytes.Equal(b, want) {
				t.Fatalf("pull after the corrupt one: %d bytes, %v", len(b), err)
			}
			if n := emu.Count(ecrtest.KindS3GET) - before; n != 2 {
				t.Errorf("S3 downloads = %d, want 2: the corrupt one was not cached", n)
			}
		})
	}
}

// TestUpstreamErrorsAreHonest: ECR failing or rate limiting gives 503
// UNAVAILABLE or 429 TOOMANYREQUESTS with Retry-After, with nothing
// internal in the body.
func TestUpstreamErrorsAreHonest(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dgst, _ := seedLayer(t, emu, "team/app:1", 64<<10)
	p := startProxy(t, emu, proxyOpts{})
	for _, tt := range []struct {
		status     int
		wantStatus int
		wantCode   string
	}{
		{http.StatusInternalServerError, http.StatusServiceUnavailable, "UNAVAILABLE"},
		{http.StatusServiceUnavailable, http.StatusServiceUnavailable, "UNAVAILABLE"},
		{http.StatusTooManyRequests, http.StatusTooManyRequests, "TOOMANYREQUESTS"},
	} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			emu.FailRegistry(10, tt.status)
			defer emu.FailRegistry(0, 0)
			resp := getBlob(t, p, "team/app", dgst)
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			var e struct {
				Errors []struct{ Code, Message string }
			}
			if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
				t.Fatalf("%d %s: not a registry error body: %v", resp.StatusCode, body, err)
			}
			if resp.StatusCode != tt.wantStatus || e.Errors[0].Code != tt.wantCode {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, e.Errors[0].Code, tt.wantStatus, tt.wantCode)
			}
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("no Retry-After on %d", resp.StatusCode)
			}
			for _, leak := range []string{"127.0.0.", "http://", "dial", "upstream answered"} {
				if strings.Contains(string(body), leak) {
					t.Errorf("body %s reveals %q", body, leak)
				}
			}
		})
	}
}

// TestTagRevalidationWindow: inside ecr.tagttl a tag pull makes no
// upstream call at all.
func TestTagRevalidationWindow(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 1, 32<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{ECRExtra: []string{"tagttl: 1h"}}})
	mustPull(t, p, "team/app:1", d)
	emu.ResetCounts()
	mustPull(t, p, "team/app:1", d)
	if c := emu.Counts(); len(nonZero(c)) != 0 {
		t.Errorf("tag pull inside the window reached ECR: %v", nonZero(c))
	}
}

func nonZero(m map[ecrtest.Kind]int) map[ecrtest.Kind]int {
	out := map[ecrtest.Kind]int{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// TestBadInputGetsSpecErrors: malformed names, digests and tags get 400
// with the spec's code before reaching distribution's router.
func TestBadInputGetsSpecErrors(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	p := startProxy(t, emu, proxyOpts{})
	long := strings.Repeat("a", 256)
	for _, tt := range []struct {
		path, code string
	}{
		{"/v2/Team/App/manifests/1", "NAME_INVALID"},
		{"/v2/team//app/manifests/1", "NAME_INVALID"},
		{"/v2/" + long + "/manifests/1", "NAME_INVALID"},
		{"/v2/team/app/blobs/sha256:xyz", "DIGEST_INVALID"},
		{"/v2/team/app/blobs/md5:abcd", "DIGEST_INVALID"},
		{"/v2/team/app/manifests/sha256:1234", "DIGEST_INVALID"},
		{"/v2/team/app/manifests/-bad-tag", "TAG_INVALID"},
		{"/v2/team/app/manifests/" + strings.Repeat("t", 129), "TAG_INVALID"},
		{"/v2/-x/tags/list", "NAME_INVALID"},
	} {
		resp, err := http.Get(p.URL() + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"`+tt.code+`"`) {
			t.Errorf("GET %s = %d %s, want 400 %s", tt.path, resp.StatusCode, body, tt.code)
		}
	}
	if n := emu.Count(ecrtest.KindRegistryOther) + emu.Count(ecrtest.KindManifestGET) + emu.Count(ecrtest.KindManifestHEAD); n != 0 {
		t.Errorf("malformed requests reached ECR: %v", nonZero(emu.Counts()))
	}
}

// TestSlowDownloads: a download that keeps receiving bytes is never cut,
// however long it takes in all (here longer than the idle timeout), and
// is cached; with ecr.fetchmaxtime set, one that outlasts it fails its
// clients and caches nothing.
func TestSlowDownloads(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	for i, tt := range []struct {
		name     string
		settings []string
		wantOK   bool
	}{
		{"slow but live", []string{"fetchidletimeout: 1s"}, true},
		{"over the cap", []string{"fetchidletimeout: 1s", "fetchmaxtime: 1s"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dgst, want := seedLayer(t, emu, fmt.Sprintf("team/slow:%d", i), 192<<10)
			p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{ECRExtra: tt.settings}})
			// About 2.4 s in all, never 200 ms without a byte.
			emu.PaceBlobs(16<<10, 200*time.Millisecond)
			resp := getBlob(t, p, "team/slow", dgst)
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			emu.PaceBlobs(0, 0)
			if ok := err == nil && bytes.Equal(b, want); ok != tt.wantOK {
				t.Fatalf("slow download: %d bytes, %v; complete = %t, want %t", len(b), err, ok, tt.wantOK)
			}
			before := emu.Count(ecrtest.KindS3GET)
			resp = getBlob(t, p, "team/slow", dgst)
			b, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || !bytes.Equal(b, want) {
				t.Fatalf("next pull: %d bytes, %v", len(b), err)
			}
			cached := emu.Count(ecrtest.KindS3GET) == before
			if cached != tt.wantOK {
				t.Errorf("the slow download was cached = %t, want %t", cached, tt.wantOK)
			}
		})
	}
}
