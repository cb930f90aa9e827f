package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// getManifest GETs repo:ref through the proxy and returns the answer's
// status, X-Cache-Status, digest and body.
func getManifest(t *testing.T, p *proxytest.Proxy, repo, ref string) (status int, cache, dgst, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL()+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s:%s: %v", repo, ref, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s:%s: read body: %v", repo, ref, err)
	}
	return resp.StatusCode, resp.Header.Get("X-Cache-Status"), resp.Header.Get("Docker-Content-Digest"), string(b)
}

// TestDeletedTagIsNotServed (issue 14, item 3): a tag deleted in ECR was
// still served from the cache, labelled MISS. ECR's 404 now gives the
// client 404 MANIFEST_UNKNOWN and drops the local tag: with ECR down
// afterwards, the tag is not served stale either.
func TestDeletedTagIsNotServed(t *testing.T) {
	emu := ecrtest.New(t)
	digest := seedImage(t, emu, "team/gone:1", 1, 4<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})
	mustPull(t, p, "team/gone:1", digest)

	if err := emu.DeleteTag(t.Context(), "team/gone", "1"); err != nil {
		t.Fatal(err)
	}
	status, cache, _, body := getManifest(t, p, "team/gone", "1")
	if status != http.StatusNotFound || !strings.Contains(body, "MANIFEST_UNKNOWN") {
		t.Fatalf("tag deleted in ECR = %d %s %q, want 404 MANIFEST_UNKNOWN", status, cache, body)
	}
	must(t, emu.Down())
	if status, cache, _, body := getManifest(t, p, "team/gone", "1"); status < 400 {
		t.Errorf("deleted tag with ECR down = %d %s %q, want an error: the local tag was kept", status, cache, body)
	}
	// By digest the manifest is still in the cache.
	if status, _, _, _ := getManifest(t, p, "team/gone", digest); status != http.StatusOK {
		t.Errorf("the manifest by digest = %d, want 200 from the cache", status)
	}
}

// TestDeniedColdTagSaysSo (issue 14, item 3): ECR's 403 on a cold tag
// was answered 404 MANIFEST_UNKNOWN; now the client is told ECR denied
// the proxy, and nothing is served from the cache for a denial.
func TestDeniedColdTagSaysSo(t *testing.T) {
	emu := ecrtest.New(t)
	seedImage(t, emu, "team/denied:1", 1, 4<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})
	emu.FailRegistry(100, http.StatusForbidden)
	status, _, _, body := getManifest(t, p, "team/denied", "1")
	if status != http.StatusForbidden || !strings.Contains(body, "DENIED") || !strings.Contains(body, "ECR denied the proxy") {
		t.Errorf("cold tag ECR denies = %d %q, want 403 DENIED saying ECR denied the proxy", status, body)
	}
}

// TestUnavailableECRServesStale (issue 14, item 3): only while ECR is
// unavailable (5xx, 429, network errors) is a cached tag served; the
// answer says X-Cache-Status: STALE and the request log says why.
func TestUnavailableECRServesStale(t *testing.T) {
	emu := ecrtest.New(t)
	digest := seedImage(t, emu, "team/stale:1", 1, 4<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})
	mustPull(t, p, "team/stale:1", digest)

	for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusTooManyRequests} {
		emu.FailRegistry(100, status)
		code, cache, got, body := getManifest(t, p, "team/stale", "1")
		if code != http.StatusOK || cache != "STALE" || got != digest {
			t.Errorf("ECR answering %d: %d %s %s %q, want 200 STALE %s", status, code, cache, got, body, digest)
		}
	}
	emu.FailRegistry(0, 0)
	must(t, emu.Down())
	if code, cache, _, body := getManifest(t, p, "team/stale", "1"); code != http.StatusOK || cache != "STALE" {
		t.Errorf("ECR down: %d %s %q, want 200 STALE", code, cache, body)
	}
	must(t, emu.Up())
	if code, cache, _, _ := getManifest(t, p, "team/stale", "1"); code != http.StatusOK || cache != "HIT" {
		t.Errorf("ECR back: %d %s, want 200 HIT", code, cache)
	}
	must(t, p.Stop()) // its request lines are all written
	lines := 0
	for _, l := range p.Lines() {
		if strings.Contains(l, "msg=request") && strings.Contains(l, "cache_status=STALE") && strings.Contains(l, "stale_reason=") {
			lines++
		}
	}
	if lines != 4 {
		t.Errorf("%d request log lines say STALE and why, want 4", lines)
	}
}

// TestTagWindowStartsOnlyOnConfirmation (issue 14, item 3): a tag served
// stale must not start the revalidation window (ecr.tagttl), or the
// stale tag would be served without asking ECR once it is back.
func TestTagWindowStartsOnlyOnConfirmation(t *testing.T) {
	emu := ecrtest.New(t)
	old := seedImage(t, emu, "team/window:1", 1, 4<<10, types.OCIManifestSchema1)
	cache := t.TempDir()
	first := startProxy(t, emu, proxyOpts{cacheDir: cache})
	mustPull(t, first, "team/window:1", old)
	must(t, first.Stop())

	// A new process: the tag is cached, its window not started.
	p := startProxy(t, emu, proxyOpts{cacheDir: cache, config: proxytest.ConfigOptions{ECRExtra: []string{"tagttl: 1h"}}})
	emu.FailRegistry(100, http.StatusServiceUnavailable)
	if code, status, got, _ := getManifest(t, p, "team/window", "1"); code != http.StatusOK || status != "STALE" || got != old {
		t.Errorf("ECR failing: %d %s %s, want 200 STALE %s", code, status, got, old)
	}
	emu.FailRegistry(0, 0)
	updated := seedImage(t, emu, "team/window:1", 1, 4<<10, types.OCIManifestSchema1)
	if code, status, got, _ := getManifest(t, p, "team/window", "1"); got != updated {
		t.Errorf("ECR back with a new image: %d %s %s, want %s: the stale answer started the tag window", code, status, got, updated)
	}
}
