package main

import (
	"crypto/rand"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// TestBlobBySHA512 (issue 14, item 6): a blob asked for by a sha512
// digest was answered with a sha256 Docker-Content-Digest. Cold (through
// the shared download), warm (from the cache) and HEAD, the answer names
// the digest asked for, and the bytes are the blob's.
func TestBlobBySHA512(t *testing.T) {
	for _, driver := range []string{"lrufilesystem", "filesystem"} {
		t.Run(driver, func(t *testing.T) { testBlobBySHA512(t, driver) })
	}
}

func testBlobBySHA512(t *testing.T, driver string) {
	emu := ecrtest.New(t)
	content := make([]byte, 96<<10)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	dgst, err := emu.SeedBlob(t.Context(), "team/sha512", content, digest.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	opts := proxyOpts{cacheDir: cache, config: proxytest.ConfigOptions{StorageDriver: driver}}
	p := startProxy(t, emu, opts)
	for i, step := range []string{"HEAD cold", "GET cold", "GET warm", "HEAD warm"} {
		if i == 2 {
			// A graceful stop waits for the download's commit: the next
			// process serves the blob from its cache.
			must(t, p.Stop())
			p = startProxy(t, emu, opts)
		}
		method := http.MethodGet
		if step[:4] == "HEAD" {
			method = http.MethodHead
		}
		req, err := http.NewRequestWithContext(t.Context(), method, p.URL()+"/v2/team/sha512/blobs/"+dgst.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: read: %v", step, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s = %d %q, want 200", step, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != dgst.String() {
			t.Errorf("%s: Docker-Content-Digest %s, want %s", step, got, dgst)
		}
		if method == http.MethodGet && digest.SHA512.FromBytes(body) != dgst {
			t.Errorf("%s: the body (%d bytes) does not match %s", step, len(body), dgst)
		}
	}
}
