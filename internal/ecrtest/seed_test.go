package ecrtest_test

import (
	"net/http"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestSeedIndex seeds a multi-platform index and reads it back by digest
// through the authenticated registry; seeding is not counted.
func TestSeedIndex(t *testing.T) {
	e := ecrtest.New(t)
	idx, err := ecrtest.RandomIndex(3, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	dgst, err := e.SeedIndex(t.Context(), "team/multi:latest", idx)
	if err != nil {
		t.Fatalf("SeedIndex: %v", err)
	}
	if n := len(e.Counts()); n != 0 {
		t.Errorf("seeding was counted: %v", e.Counts())
	}
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 3 || m.Manifests[2].Platform.Variant != "v7" {
		t.Errorf("index manifests: %+v", m.Manifests)
	}
	r := do(t, http.MethodGet, e.RegistryURL()+"/v2/team/multi/manifests/"+dgst, basic(t, e), nil, "Accept", string(types.OCIImageIndex))
	if r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != dgst {
		t.Errorf("GET index = %d, digest %q, want %s", r.status, r.header.Get("Docker-Content-Digest"), dgst)
	}
}

// TestCredentialEndpointsRefuse checks the IMDS token and the container
// authorization token are required.
func TestCredentialEndpointsRefuse(t *testing.T) {
	e := ecrtest.New(t)
	for _, tc := range []struct {
		name, url, auth string
		hdr             []string
		want            int
	}{
		{"IMDS without token", e.IMDSURL() + "/latest/meta-data/iam/security-credentials/", "", nil, http.StatusUnauthorized},
		{"IMDS bad token", e.IMDSURL() + "/latest/meta-data/iam/security-credentials/", "", []string{"X-Aws-Ec2-Metadata-Token", "x"}, http.StatusUnauthorized},
		{"container without token", e.ContainerCredentialsURL(), "", nil, http.StatusForbidden},
		{"container bad token", e.ContainerCredentialsURL(), "wrong", nil, http.StatusForbidden},
		{"container good token", e.ContainerCredentialsURL(), e.ContainerAuthToken(), nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := do(t, http.MethodGet, tc.url, tc.auth, nil, tc.hdr...); r.status != tc.want {
				t.Errorf("status = %d, want %d (%s)", r.status, tc.want, r.body)
			}
		})
	}
}
