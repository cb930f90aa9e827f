package pushthrough

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// uploadAs pushes content through the gateway at base by a POST and a PUT
// naming its digest under alg, and returns the digest.
func uploadAs(t *testing.T, base, repo string, content []byte, alg digest.Algorithm) digest.Digest {
	t.Helper()
	resp, body := do(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s %s", resp.Status, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	d := alg.FromBytes(content)
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	resp, body = do(t, http.MethodPut, base+loc.RequestURI(), bytes.NewReader(content), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s: %s %s", d, resp.Status, body)
	}
	return d
}

// TestWriteThroughSHA512: an image pushed by sha512 digests (to an ECR
// that supports them, the emulator's WithSHA512) is copied into the cache:
// its blobs under their sha512 digests, its manifest, put by its sha512
// digest, under the sha256 one distribution's store names manifests by.
// The manifest was once refused as not matching its reference, which was
// compared with its sha256 digest.
func TestWriteThroughSHA512(t *testing.T) { forEachStore(t, testWriteThroughSHA512) }

func testWriteThroughSHA512(t *testing.T, store string) {
	emu := ecrtest.New(t, ecrtest.WithSHA512(true))
	user, pw, err := emu.Token()
	if err != nil {
		t.Fatal(err)
	}
	wt, ns := newLocalOn(t, store)
	gw := newGateway(t, emu.RegistryURL(), basicTransport{user, pw}, nil, WithWriteThrough(wt))
	const repo = "team/sha512"
	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), bytes.Repeat([]byte("layer "), 1000)
	cd, ld := uploadAs(t, gw.URL, repo, config, digest.SHA512), uploadAs(t, gw.URL, repo, layer, digest.SHA512)
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: ld, Size: int64(len(layer))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	md := digest.SHA512.FromBytes(manifest)
	resp, body := do(t, http.MethodPut, gw.URL+"/v2/"+repo+"/manifests/"+md.String(), bytes.NewReader(manifest),
		map[string]string{"Content-Type": ocispec.MediaTypeImageManifest})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != md.String() {
		t.Fatalf("manifest PUT by sha512: %s %s, digest %q", resp.Status, body, resp.Header.Get("Docker-Content-Digest"))
	}
	for _, d := range []digest.Digest{cd, ld} {
		if !hasBlob(t, ns, repo, d) {
			t.Errorf("blob %s pushed but not cached", d)
		}
	}
	checkManifest(t, ns, repo, digest.FromBytes(manifest))
}
