package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestUpstreamManifestsAreChecked: a manifest from ECR larger than 4 MiB,
// or whose body does not match the digest announced for it, is refused
// (502 MANIFEST_INVALID for the client, saying why without internals,
// and nothing cached); once ECR serves the real
// manifest, the pull works and gets it.
func TestUpstreamManifestsAreChecked(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	p := startProxy(t, emu, proxyOpts{})
	get := func(repo string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL()+"/v2/"+repo+"/manifests/1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", string(types.OCIManifestSchema1))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), string(b)
	}
	for i, tt := range []struct {
		name        string
		padTo       int64
		wrongDigest bool
	}{
		{"100 MiB manifest", 100 << 20, false},
		{"body not matching its digest", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A repository of its own: the previous case cached its tag.
			repo := fmt.Sprintf("team/app%d", i)
			want := seedImage(t, emu, repo+":1", 1, 4<<10, types.OCIManifestSchema1)
			emu.TamperManifests(tt.padTo, tt.wrongDigest)
			status, dgst, body := get(repo)
			emu.TamperManifests(0, false)
			if status != http.StatusBadGateway || !strings.Contains(body, "MANIFEST_INVALID") {
				t.Errorf("tampered manifest: %d %s (%d bytes), want 502 MANIFEST_INVALID", status, dgst, len(body))
			}
			for _, leak := range []string{"127.0.0.", "http://", "sha256:"} {
				if strings.Contains(body, leak) {
					t.Errorf("answer %s reveals %q", body, leak)
				}
			}
			status, dgst, body = get(repo)
			if status != http.StatusOK || dgst != want || strings.TrimSpace(body) != body {
				t.Errorf("after ECR recovered: %d %s (%d bytes), want 200 %s", status, dgst, len(body), want)
			}
		})
	}
}
