package ecrtest_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestRefuseTokens: every valid token, also one minted after the call, is
// refused as configured until RefuseTokens(0); a HEAD's 403 has no body.
func TestRefuseTokens(t *testing.T) {
	e := ecrtest.New(t)
	before := basic(t, e)
	const expired = `{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}`

	e.RefuseTokens(http.StatusUnauthorized)
	for _, auth := range []string{before, basic(t, e)} {
		if r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", auth, nil); r.status != http.StatusUnauthorized ||
			!strings.HasPrefix(r.header.Get("Www-Authenticate"), "Basic ") {
			t.Errorf("RefuseTokens(401): GET = %d, challenge %q; want 401 with ECR's challenge", r.status, r.header.Get("Www-Authenticate"))
		}
	}
	e.RefuseTokens(http.StatusForbidden)
	if r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", basic(t, e), nil); r.status != http.StatusForbidden || r.body != expired {
		t.Errorf("RefuseTokens(403): GET = %d %q, want 403 %q", r.status, r.body, expired)
	}
	if r := do(t, http.MethodHead, e.RegistryURL()+"/v2/", before, nil); r.status != http.StatusForbidden || r.body != "" {
		t.Errorf("RefuseTokens(403): HEAD = %d %q, want 403 with no body", r.status, r.body)
	}
	if r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", "Basic "+b64("AWS:not-a-token"), nil); r.status != http.StatusUnauthorized {
		t.Errorf("RefuseTokens(403): unknown token = %d, want 401 as before", r.status)
	}
	e.RefuseTokens(0)
	if r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", before, nil); r.status != http.StatusOK {
		t.Errorf("after RefuseTokens(0): GET = %d, want 200", r.status)
	}
}

// TestInMemoryUnderSynctest: inside a synctest bubble, MemNet reaches the
// registry, S3 through the registry's redirect, and the AWS API; the
// emulator's handlers read the bubble's fake clock, so a token expires
// when fake time passes its lifetime; and nothing is left running.
func TestInMemoryUnderSynctest(t *testing.T) {
	e := ecrtest.New(t, ecrtest.WithTokenLifetime(time.Minute))
	img, err := ecrtest.RandomImage(1, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Seed(t.Context(), "team/app:1", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	dgst, _ := layers[0].Digest()
	size, _ := layers[0].Size()

	synctest.Test(t, func(t *testing.T) {
		m := e.InMemory()
		defer func() {
			if err := m.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		c := m.Client()
		user, pw, err := e.Token()
		if err != nil {
			t.Fatal(err)
		}
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
		get := func(url string) (int, int) {
			t.Helper()
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", auth)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			return resp.StatusCode, len(b)
		}
		// Go's client drops Authorization on the redirect to another host.
		if code, n := get(e.RegistryURL() + "/v2/team/app/blobs/" + dgst.String()); code != http.StatusOK || int64(n) != size {
			t.Errorf("blob GET = %d with %d bytes, want 200 with %d", code, n, size)
		}
		if n := e.Count(ecrtest.KindS3GET); n != 1 {
			t.Errorf("S3 GETs = %d, want 1", n)
		}
		if code, _ := get(e.APIURL() + "/nothing-here"); code != http.StatusNotFound {
			t.Errorf("AWS API server = %d, want its 404", code)
		}
		time.Sleep(time.Minute) // fake time: the token's lifetime
		if code, _ := get(e.RegistryURL() + "/v2/"); code != http.StatusForbidden {
			t.Errorf("GET after the token's lifetime of fake time = %d, want 403 (expired)", code)
		}
	})
}
