package ecrtest_test

import (
	"encoding/json"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestReferrers: a manifest stored with a subject is listed by the
// referrers API of its subject, filtered by artifactType; a digest with
// none gets an empty index.
func TestReferrers(t *testing.T) {
	e := ecrtest.New(t)
	base, err := ecrtest.RandomImage(1, 1024)
	if err != nil {
		t.Fatal(err)
	}
	baseDigest, err := e.Seed(t.Context(), "team/app:1", base)
	if err != nil {
		t.Fatal(err)
	}
	baseDesc, err := partial(base)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ecrtest.RandomImage(1, 256)
	if err != nil {
		t.Fatal(err)
	}
	sig, ok := mutate.Subject(mutate.ConfigMediaType(sig, "application/vnd.example.signature"), baseDesc).(v1.Image)
	if !ok {
		t.Fatal("mutate.Subject did not return an image")
	}
	sigDigest, err := e.Seed(t.Context(), "team/app:sig", sig)
	if err != nil {
		t.Fatal(err)
	}
	auth := basic(t, e)
	list := func(query string) (int, []struct{ Digest, ArtifactType string }) {
		t.Helper()
		r := do(t, http.MethodGet, e.RegistryURL()+"/v2/team/app/referrers/"+baseDigest+query, auth, nil)
		var idx struct {
			Manifests []struct{ Digest, ArtifactType string }
		}
		if err := json.Unmarshal([]byte(r.body), &idx); err != nil {
			t.Fatalf("referrers body %q: %v", r.body, err)
		}
		return r.status, idx.Manifests
	}
	if status, m := list(""); status != 200 || len(m) != 1 || m[0].Digest != sigDigest || m[0].ArtifactType != "application/vnd.example.signature" {
		t.Errorf("referrers = %d %+v, want the signature %s", status, m, sigDigest)
	}
	if status, m := list("?artifactType=application/other"); status != 200 || len(m) != 0 {
		t.Errorf("filtered referrers = %d %+v, want none", status, m)
	}
	r := do(t, http.MethodGet, e.RegistryURL()+"/v2/team/app/referrers/"+sigDigest, auth, nil)
	if r.status != 200 || r.body == "" {
		t.Errorf("referrers of a digest with none = %d %q, want 200 and an empty index", r.status, r.body)
	}
	if n := e.Count(ecrtest.KindReferrers); n != 3 {
		t.Errorf("referrers requests counted %d, want 3", n)
	}
}

func partial(img v1.Image) (v1.Descriptor, error) {
	d, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := img.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{Digest: d, Size: size, MediaType: types.MediaType(mt)}, nil
}
