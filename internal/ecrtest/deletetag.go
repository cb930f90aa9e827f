package ecrtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
)

// DeleteTag removes tag from repo, as `aws ecr batch-delete-image
// --image-ids imageTag=<tag>` does: ECR then answers 404 MANIFEST_UNKNOWN
// for it. The manifest stays reachable by digest.
func (e *Emulator) DeleteTag(ctx context.Context, repo, tag string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "/v2/"+repo+"/manifests/"+tag, http.NoBody)
	if err != nil {
		return err
	}
	req.Host = e.RegistryHost()
	req.RequestURI = req.URL.RequestURI()
	rec := httptest.NewRecorder()
	e.backing.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		return fmt.Errorf("ecrtest: delete %s:%s: %d %s", repo, tag, rec.Code, rec.Body.String())
	}
	return nil
}
