package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// rawAnswer is one response read whole.
type rawAnswer struct {
	status int
	header http.Header
	body   []byte
}

// sendRaw sends one request to target with the header pairs given.
func sendRaw(t *testing.T, method, target string, body []byte, header ...string) rawAnswer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, target, err)
	}
	return rawAnswer{resp.StatusCode, resp.Header, b}
}

// pushSHA512Blob uploads content through the proxy at base by a POST and
// a PUT naming its sha512 digest, and checks that the answer names it.
func pushSHA512Blob(t *testing.T, base, repo string, content []byte) digest.Digest {
	t.Helper()
	start := sendRaw(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	if start.status != http.StatusAccepted {
		t.Fatalf("start upload: %d %s", start.status, start.body)
	}
	loc, err := url.Parse(start.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	d := digest.SHA512.FromBytes(content)
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	target := loc.String()
	if !loc.IsAbs() {
		target = base + loc.RequestURI()
	}
	end := sendRaw(t, http.MethodPut, target, content, "Content-Type", "application/octet-stream")
	if end.status != http.StatusCreated || end.header.Get("Docker-Content-Digest") != d.String() ||
		end.header.Get("Location") != base+"/v2/"+repo+"/blobs/"+d.String() {
		t.Fatalf("upload by sha512: %d %s, digest %q, Location %q; want 201 naming %s on the proxy",
			end.status, end.body, end.header.Get("Docker-Content-Digest"), end.header.Get("Location"), d)
	}
	return d
}

// TestPushAndPullBySHA512 (issue 14, item 6): with an ECR that supports
// sha512 (the emulator's WithSHA512, as the OCI suite's registry), an
// image pushed through the proxy by sha512 digests is answered with them:
// the uploads' completion, the manifest PUT by digest, and the manifest
// read back by that digest, cold and again, GET and HEAD.
func TestPushAndPullBySHA512(t *testing.T) {
	emu := ecrtest.New(t, ecrtest.WithSHA512(true))
	p := startProxy(t, emu, proxyOpts{})
	base, repo := p.URL(), "team/sha512-push"

	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), bytes.Repeat([]byte("sha512 layer "), 4096)
	cd, ld := pushSHA512Blob(t, base, repo, config), pushSHA512Blob(t, base, repo, layer)
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
	target := base + "/v2/" + repo + "/manifests/" + md.String()
	put := sendRaw(t, http.MethodPut, target, manifest, "Content-Type", ocispec.MediaTypeImageManifest)
	if put.status != http.StatusCreated || put.header.Get("Docker-Content-Digest") != md.String() ||
		!strings.HasSuffix(put.header.Get("Location"), "/manifests/"+md.String()) {
		t.Fatalf("manifest PUT by sha512: %d %s, digest %q, Location %q", put.status, put.body,
			put.header.Get("Docker-Content-Digest"), put.header.Get("Location"))
	}
	for _, step := range []string{"GET", "GET", "HEAD"} {
		got := sendRaw(t, step, target, nil, "Accept", ocispec.MediaTypeImageManifest)
		if got.status != http.StatusOK || got.header.Get("Docker-Content-Digest") != md.String() {
			t.Errorf("%s by sha512: %d %s, digest %q; want 200 naming %s", step, got.status, got.body, got.header.Get("Docker-Content-Digest"), md)
		}
		if step == "GET" && !bytes.Equal(got.body, manifest) {
			t.Errorf("GET by sha512: %d bytes, want the %d of the manifest pushed", len(got.body), len(manifest))
		}
	}
	got := sendRaw(t, http.MethodGet, base+"/v2/"+repo+"/blobs/"+ld.String(), nil)
	if got.status != http.StatusOK || got.header.Get("Docker-Content-Digest") != ld.String() || !bytes.Equal(got.body, layer) {
		t.Errorf("layer by sha512: %d, digest %q, %d bytes", got.status, got.header.Get("Docker-Content-Digest"), len(got.body))
	}
}
