package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// TestColdBlobHEADAfterTokenExpiry: ECR answers a HEAD with an expired
// token 403 and no body, so nothing says "expired". The proxy re-mints
// once and the HEAD of a cold blob, and the GET of another, succeed;
// before, they failed with 403 until a manifest GET happened to re-mint.
func TestColdBlobHEADAfterTokenExpiry(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	headDigest, headSize := authSeedLayer(t, emu, "team/head:1")
	getDigest, getSize := authSeedLayer(t, emu, "team/get:1")
	p := startProxy(t, emu, proxyOpts{})

	emu.ExpireTokens()
	resp := authBlobRequest(t, p, http.MethodHead, "team/head", headDigest)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != headSize {
		t.Errorf("cold HEAD after the token expired = %d, length %d; want 200, %d", resp.StatusCode, resp.ContentLength, headSize)
	}
	if n := emu.Count(ecrtest.KindTokenMint); n != 2 {
		t.Errorf("mints after the HEAD = %d, want 2 (the first and one re-mint)", n)
	}

	emu.ExpireTokens()
	resp = authBlobRequest(t, p, http.MethodGet, "team/get", getDigest)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != getSize {
		t.Errorf("cold GET after the token expired = %d, length %d; want 200, %d", resp.StatusCode, resp.ContentLength, getSize)
	}
	if n := emu.Count(ecrtest.KindTokenMint); n != 3 {
		t.Errorf("mints after the GET = %d, want 3", n)
	}
}

// authSeedLayer seeds a one-layer image at ref and returns the layer's
// digest and size.
func authSeedLayer(t *testing.T, emu *ecrtest.Emulator, ref string) (string, int64) {
	t.Helper()
	img, err := ecrtest.RandomImage(1, 32<<10, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.Seed(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), size
}

// authBlobRequest sends a HEAD or GET of a blob to the proxy, reads the
// whole body, and returns the response.
func authBlobRequest(t *testing.T, p *proxytest.Proxy, method, repo, dgst string) blobAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, p.URL()+"/v2/"+repo+"/blobs/"+dgst, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s blob: %v", method, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("%s blob: read body: %v", method, err)
	}
	return blobAnswer{resp.StatusCode, resp.ContentLength}
}

// blobAnswer is what authBlobRequest got, its body read and closed.
type blobAnswer struct {
	StatusCode    int
	ContentLength int64
}
