package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestTagHeadFromTheCache: a HEAD by tag of a cached image asks ECR once
// (a HEAD) and answers exactly as distribution does; when the tag moves
// in ECR, the HEAD names the new image.
func TestTagHeadFromTheCache(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	first := seedImage(t, emu, "team/app:1", 1, 4<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})
	mustPull(t, p, "team/app:1", first)

	// head answers the status and the header of a HEAD by tag.
	type answer struct {
		StatusCode int
		Header     http.Header
	}
	head := func(accept string, header ...string) answer {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, p.URL()+"/v2/team/app/manifests/1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return answer{resp.StatusCode, resp.Header}
	}
	// distribution logs each request it answers ("response completed");
	// the gateway answers the simple case before it.
	byDistribution := func() int {
		n := 0
		for _, l := range p.Lines() {
			if strings.Contains(l, "response completed") && strings.Contains(l, "/v2/team/app/manifests/1") {
				n++
			}
		}
		return n
	}
	before := byDistribution()
	emu.ResetCounts()
	accept := string(types.OCIManifestSchema1) + ", " + string(types.DockerManifestSchema2)
	fast := head(accept)
	if n, gets := emu.Count(ecrtest.KindManifestHEAD), emu.Count(ecrtest.KindManifestGET); n != 1 || gets != 0 {
		t.Errorf("warm tag HEAD asked ECR %d HEADs and %d GETs, want 1 and 0", n, gets)
	}
	if n := byDistribution() - before; n != 0 {
		t.Errorf("the warm tag HEAD went through distribution's app (%d lines)", n)
	}
	// With If-None-Match (not matching) distribution answers: the
	// reference.
	app := head(accept, "If-None-Match", `"other"`)
	if !pollUntil(t, func() bool { return byDistribution()-before == 1 }) {
		t.Error("the reference HEAD did not go through distribution's app")
	}
	if fast.StatusCode != http.StatusOK || fast.Header.Get("Docker-Content-Digest") != first {
		t.Fatalf("tag HEAD: %d %s, want 200 %s", fast.StatusCode, fast.Header.Get("Docker-Content-Digest"), first)
	}
	for _, h := range []string{"Content-Type", "Content-Length", "Docker-Content-Digest", "Etag", "Docker-Distribution-Api-Version", "X-Content-Type-Options", "X-Cache-Status"} {
		if fast.Header.Get(h) != app.Header.Get(h) {
			t.Errorf("%s: %q, distribution answers %q", h, fast.Header.Get(h), app.Header.Get(h))
		}
	}

	second := seedImage(t, emu, "team/app:1", 1, 4<<10, types.OCIManifestSchema1)
	moved := head(string(types.OCIManifestSchema1))
	if moved.StatusCode != http.StatusOK || moved.Header.Get("Docker-Content-Digest") != second {
		t.Errorf("after the tag moved in ECR: %d %s, want 200 %s", moved.StatusCode, moved.Header.Get("Docker-Content-Digest"), second)
	}
}
