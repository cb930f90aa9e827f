package gateway

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// errManifest is a manifest from upstream refused by GuardManifests.
var errManifest = errors.New("upstream manifest refused")

// GuardManifests wraps the transport distribution's proxy fetches
// manifests through. distribution reads a manifest body whole, with no
// bound, and trusts a by-tag answer: a 100 MiB manifest took 450 MiB of
// memory per request and was cached. A manifest body (GET of
// /v2/<name>/manifests/<reference> answered 200) now fails the read past
// [wire.MaxManifestSize], and at its end unless it matches its digest: the
// reference when it is a digest, else the Docker-Content-Digest the
// answer announces (the digest the proxy announces to its clients). A
// refused manifest is never cached: distribution's read fails.
func GuardManifests(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
			return resp, err
		}
		ref, ok := manifestReference(req.URL.Path)
		if !ok {
			return resp, nil
		}
		rec, _ := req.Context().Value(recorderKey{}).(*fetchRecorder)
		if resp.ContentLength > wire.MaxManifestSize {
			_ = resp.Body.Close()
			rec.noteRefused()
			return nil, fmt.Errorf("%w: %d bytes, more than %d", errManifest, resp.ContentLength, wire.MaxManifestSize)
		}
		want, err := digest.Parse(ref)
		if err != nil {
			want, err = digest.Parse(resp.Header.Get("Docker-Content-Digest"))
		}
		g := &guardedBody{ReadCloser: resp.Body, rec: rec}
		if err == nil && want.Algorithm().Available() {
			g.want, g.verifier = want, want.Algorithm().Hash()
		}
		resp.Body = g
		return resp, nil
	})
}

// manifestReference returns the reference of a manifest path.
func manifestReference(p string) (string, bool) {
	i := strings.LastIndex(p, "/manifests/")
	if !strings.HasPrefix(p, "/v2/") || i < 0 {
		return "", false
	}
	return p[i+len("/manifests/"):], true
}

// guardedBody bounds a manifest body and checks its digest at its end.
type guardedBody struct {
	io.ReadCloser
	rec      *fetchRecorder // of the client's request; nil outside one
	n        int64
	want     digest.Digest
	verifier hash.Hash
}

func (g *guardedBody) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	g.n += int64(n)
	if g.n > wire.MaxManifestSize {
		g.rec.noteRefused()
		return 0, fmt.Errorf("%w: more than %d bytes", errManifest, wire.MaxManifestSize)
	}
	if g.verifier != nil {
		_, _ = g.verifier.Write(p[:n])
	}
	if errors.Is(err, io.EOF) && g.verifier != nil {
		got := digest.NewDigestFromBytes(g.want.Algorithm(), g.verifier.Sum(nil))
		if got != g.want {
			g.rec.noteRefused()
			return n, fmt.Errorf("%w: body has digest %s, announced %s", errManifest, got, g.want)
		}
	}
	return n, err
}
