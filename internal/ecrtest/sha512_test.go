package ecrtest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// pushBlobAs uploads content to repo by a POST and a PUT naming its
// digest under alg, and returns the digest and the PUT's answer.
func pushBlobAs(t *testing.T, e *ecrtest.Emulator, auth, repo string, content []byte, alg digest.Algorithm) (digest.Digest, response) {
	t.Helper()
	start := do(t, http.MethodPost, e.RegistryURL()+"/v2/"+repo+"/blobs/uploads/", auth, nil)
	if start.status != http.StatusAccepted {
		t.Fatalf("start upload: %d %s", start.status, start.body)
	}
	loc, err := url.Parse(start.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	dgst := alg.FromBytes(content)
	q := loc.Query()
	q.Set("digest", dgst.String())
	loc.RawQuery = q.Encode()
	target := e.RegistryURL() + loc.RequestURI()
	return dgst, do(t, http.MethodPut, target, auth, bytes.NewReader(content), "Content-Type", "application/octet-stream")
}

// sha512Manifest pushes a config blob and a layer by their sha512 digests
// and returns an image manifest naming them, and its sha512 digest.
func sha512Manifest(t *testing.T, e *ecrtest.Emulator, auth, repo string) ([]byte, digest.Digest) {
	t.Helper()
	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), []byte("a sha512 layer")
	cfgDigest, r := pushBlobAs(t, e, auth, repo, config, digest.SHA512)
	if r.status != http.StatusCreated {
		t.Fatalf("config upload: %d %s", r.status, r.body)
	}
	layerDigest, r := pushBlobAs(t, e, auth, repo, layer, digest.SHA512)
	if r.status != http.StatusCreated {
		t.Fatalf("layer upload: %d %s", r.status, r.body)
	}
	m, err := json.Marshal(v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(config))},
		Layers:    []v1.Descriptor{{MediaType: v1.MediaTypeImageLayer, Digest: layerDigest, Size: int64(len(layer))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, digest.SHA512.FromBytes(m)
}

// TestSHA512 (issue 14, item 6): with WithSHA512 the emulator answers an
// upload completed by a sha512 digest with that digest, and takes and
// serves a manifest by its sha512 digest, as the OCI suite's registry
// does; without it, as ECR, it answers the sha256 digest and refuses the
// manifest.
func TestSHA512(t *testing.T) {
	t.Parallel()
	e := ecrtest.New(t, ecrtest.WithSHA512(true))
	auth := basic(t, e)
	const repo = "team/sha512"
	manifest, md := sha512Manifest(t, e, auth, repo)

	dgst, r := pushBlobAs(t, e, auth, repo, []byte("one more blob"), digest.SHA512)
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != dgst.String() ||
		!strings.HasSuffix(r.header.Get("Location"), "/v2/"+repo+"/blobs/"+dgst.String()) {
		t.Errorf("upload by sha512: %d, digest %q, Location %q; want 201 naming %s",
			r.status, r.header.Get("Docker-Content-Digest"), r.header.Get("Location"), dgst)
	}

	target := e.RegistryURL() + "/v2/" + repo + "/manifests/"
	bad := append(bytes.Clone(manifest), ' ')
	if r := do(t, http.MethodPut, target+md.String(), auth, bytes.NewReader(bad), "Content-Type", v1.MediaTypeImageManifest); r.status != http.StatusBadRequest || !contains(r.body, "DIGEST_INVALID") {
		t.Errorf("manifest PUT whose body does not match: %d %s, want 400 DIGEST_INVALID", r.status, r.body)
	}
	r = do(t, http.MethodPut, target+md.String(), auth, bytes.NewReader(manifest), "Content-Type", v1.MediaTypeImageManifest)
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != md.String() ||
		!strings.HasSuffix(r.header.Get("Location"), "/manifests/"+md.String()) {
		t.Fatalf("manifest PUT by sha512: %d %s, digest %q, Location %q", r.status, r.body, r.header.Get("Docker-Content-Digest"), r.header.Get("Location"))
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		r := do(t, method, target+md.String(), auth, nil, "Accept", v1.MediaTypeImageManifest)
		if r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != md.String() ||
			r.header.Get("Content-Length") != strconv.Itoa(len(manifest)) {
			t.Errorf("%s by sha512: %d, digest %q, length %q", method, r.status, r.header.Get("Docker-Content-Digest"), r.header.Get("Content-Length"))
		}
		if method == http.MethodGet && r.body != string(manifest) {
			t.Errorf("GET by sha512: body %q, want the manifest put", r.body)
		}
	}
	if r := do(t, http.MethodGet, target+digest.SHA512.FromString("other").String(), auth, nil); r.status != http.StatusNotFound {
		t.Errorf("GET of an unknown sha512 manifest: %d, want 404", r.status)
	}
}

// TestSHA256OnlyByDefault: without WithSHA512 the emulator keeps ECR's
// sha256-only answers.
func TestSHA256OnlyByDefault(t *testing.T) {
	t.Parallel()
	e := ecrtest.New(t)
	auth := basic(t, e)
	const repo = "team/sha256"
	content := []byte("one more blob")
	_, r := pushBlobAs(t, e, auth, repo, content, digest.SHA512)
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != digest.FromBytes(content).String() {
		t.Errorf("upload by sha512: %d, digest %q; want 201 with the sha256 digest", r.status, r.header.Get("Docker-Content-Digest"))
	}
	manifest, md := sha512Manifest(t, e, auth, repo)
	r = do(t, http.MethodPut, e.RegistryURL()+"/v2/"+repo+"/manifests/"+md.String(), auth, bytes.NewReader(manifest), "Content-Type", v1.MediaTypeImageManifest)
	if r.status != http.StatusBadRequest {
		t.Errorf("manifest PUT by sha512: %d %s, want 400 as ECR", r.status, r.body)
	}
}
