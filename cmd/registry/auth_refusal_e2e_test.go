package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestRefusingECRDoesNotCauseMintStorm (issue 14, item 4): with ECR
// refusing every token, even those just minted, 20 client requests gave
// 21 GetAuthorizationToken calls. Now there is one re-mint, then at most
// one mint per 5 s while the refusals go on; each client gets an error
// answer at once (not a hang, not a 200); and once ECR accepts tokens
// again, pulls work.
func TestRefusingECRDoesNotCauseMintStorm(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			ecrtest.ClearAWSEnv(t)
			emu := ecrtest.New(t)
			digest := seedImage(t, emu, "team/app:1", 1, 16<<10, types.OCIManifestSchema1)
			layerDigest, _ := authSeedLayer(t, emu, "team/other:1")
			p := startProxy(t, emu, proxyOpts{})
			emu.ResetCounts() // the first mint, at start

			emu.RefuseTokens(status)
			start := time.Now()
			for i := range 20 {
				// Cold manifests (GET) and cold blobs (HEAD, then GET).
				var code int
				var body string
				switch i % 3 {
				case 0:
					code, body = authGet(t, p.URL()+"/v2/team/app/manifests/1", http.MethodGet)
				case 1:
					code, body = authGet(t, p.URL()+"/v2/team/other/blobs/"+layerDigest, http.MethodHead)
				default:
					code, body = authGet(t, p.URL()+"/v2/team/other/blobs/"+layerDigest, http.MethodGet)
				}
				if code < 400 {
					t.Errorf("request %d while ECR refuses every token = %d %q, want an error", i, code, body)
				}
			}
			elapsed := time.Since(start)
			// One re-mint, then at most one per 5 s.
			if n, limit := emu.Count(ecrtest.KindTokenMint), 1+int(elapsed/(5*time.Second))+1; n > limit {
				t.Errorf("%d mints for 20 requests in %v while ECR refuses, want at most %d", n, elapsed.Round(time.Millisecond), limit)
			}
			if n := strings.Count(p.Logs(), "ECR refuses the token minted after it refused the previous one"); n < 1 {
				t.Errorf("the log does not say ECR refuses fresh tokens (%d times)", n)
			}

			emu.RefuseTokens(0)
			mustPull(t, p, "team/app:1", digest)
		})
	}
}

// authGet sends one request to url and returns its status and body.
func authGet(t *testing.T, url, method string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}
