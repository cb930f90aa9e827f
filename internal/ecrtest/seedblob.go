package ecrtest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/opencontainers/go-digest"
)

// SeedBlob stores content in repo as a blob named by its digest under
// alg (digest.SHA256, or digest.SHA512 as the OCI conformance suite
// pushes), by a monolithic upload, and returns that digest. Like the
// distribution registry the suite runs against, the emulator accepts
// either; a blob stored under sha512 is answered by that digest.
func (e *Emulator) SeedBlob(ctx context.Context, repo string, content []byte, alg digest.Algorithm) (digest.Digest, error) {
	if !alg.Available() {
		return "", fmt.Errorf("ecrtest: digest algorithm %s unavailable", alg)
	}
	dgst := alg.FromBytes(content)
	rec := e.backingDo(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil)
	if rec.Code != http.StatusAccepted {
		return "", fmt.Errorf("ecrtest: start upload to %s: %d %s", repo, rec.Code, rec.Body.String())
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		return "", fmt.Errorf("ecrtest: upload location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", dgst.String())
	rec = e.backingDo(ctx, http.MethodPut, loc.Path+"?"+q.Encode(), content)
	if rec.Code != http.StatusCreated {
		return "", fmt.Errorf("ecrtest: put %s to %s: %d %s", dgst, repo, rec.Code, rec.Body.String())
	}
	return dgst, nil
}

// backingDo sends one request to the backing registry, in process.
func (e *Emulator) backingDo(ctx context.Context, method, target string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	req.Host = e.RegistryHost()
	req.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	e.backing.ServeHTTP(rec, req)
	return rec
}
