package ecrtest

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Digests other than sha256 (WithSHA512). distribution v3.1.2, the
// emulator's backing registry, verifies an upload against any digest the
// client names but stores the blob under its sha256 and answers with that
// (linking the requested digest as an alias, so that blob reads by it
// work); it refuses a manifest PUT by a digest it does not compute
// (sha256) with 400 DIGEST_INVALID. With the option, the emulator answers
// as a registry that supports the algorithm (the OCI conformance suite's
// expectation): an upload's completion or mount with the digest the client
// named, and manifests put and read by such a digest, stored in the
// backing registry under their sha256.

// maxAliasedManifest bounds a manifest put by another digest, read whole
// (ECR's manifest limit).
const maxAliasedManifest = 4 << 20

// otherDigest returns ref as a digest of an available algorithm other than
// sha256.
func otherDigest(ref string) (digest.Digest, bool) {
	d, err := digest.Parse(ref)
	if err != nil || d.Algorithm() == digest.Canonical || !d.Algorithm().Available() {
		return "", false
	}
	return d, true
}

// aliasKey names a manifest put by another digest in a repository.
func aliasKey(repo string, d digest.Digest) string { return repo + "@" + d.String() }

// otherDigests adapts a request that names a digest other than sha256,
// when WithSHA512 is set: it serves a manifest PUT itself (done), and
// otherwise returns the writer and request the usual route serves.
func (e *Emulator) otherDigests(w http.ResponseWriter, r *http.Request, rt route) (http.ResponseWriter, *http.Request, bool) {
	if !e.cfg.sha512 {
		return w, r, false
	}
	switch rt.kind {
	case KindUpload:
		q := r.URL.Query()
		d, ok := otherDigest(q.Get("digest"))
		if !ok && r.Method == http.MethodPost {
			d, ok = otherDigest(q.Get("mount"))
		}
		if ok && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
			return &digestAnswer{ResponseWriter: w, want: d, created: "/blobs/"}, r, false
		}
	case KindManifestPUT:
		if d, ok := otherDigest(rt.ref); ok {
			e.putAliasedManifest(w, r, rt, d)
			return w, r, true
		}
	case KindManifestGET, KindManifestHEAD, KindManifestDELETE:
		d, ok := otherDigest(rt.ref)
		if !ok {
			break
		}
		canonical, found := e.digestAliases.Load(aliasKey(rt.name, d))
		if !found {
			break
		}
		if rt.kind == KindManifestDELETE {
			e.digestAliases.Delete(aliasKey(rt.name, d))
		}
		return &digestAnswer{ResponseWriter: w, want: d}, withManifestRef(r, rt.name, canonical.(digest.Digest)), false
	}
	return w, r, false
}

// putAliasedManifest checks a manifest put by digest d against its body,
// puts it into the backing registry by its sha256, and answers with d.
func (e *Emulator) putAliasedManifest(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAliasedManifest+1))
	if err != nil {
		writeOCIError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest body could not be read")
		return
	}
	if len(body) > maxAliasedManifest {
		writeOCIError(w, http.StatusRequestEntityTooLarge, "MANIFEST_INVALID", "manifest larger than 4 MiB")
		return
	}
	if d.Algorithm().FromBytes(body) != d {
		writeOCIError(w, http.StatusBadRequest, "DIGEST_INVALID", "provided digest did not match uploaded content")
		return
	}
	canonical := digest.FromBytes(body)
	out := withManifestRef(r, rt.name, canonical)
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	aw := &digestAnswer{ResponseWriter: w, want: d, created: "/manifests/"}
	e.backing.ServeHTTP(aw, out)
	if aw.status == http.StatusCreated {
		e.digestAliases.Store(aliasKey(rt.name, d), canonical)
	}
}

// withManifestRef is r for the manifest ref of repo.
func withManifestRef(r *http.Request, repo string, ref digest.Digest) *http.Request {
	out := r.Clone(r.Context())
	out.URL.Path = "/v2/" + repo + "/manifests/" + ref.String()
	out.URL.RawPath = ""
	out.RequestURI = out.URL.RequestURI()
	return out
}

// digestAnswer answers with digest want where the backing registry
// answers with the sha256 one: Docker-Content-Digest on success and, on a
// 201, the Location's digest after created ("/blobs/", "/manifests/").
type digestAnswer struct {
	http.ResponseWriter
	want    digest.Digest
	created string
	status  int
}

func (a *digestAnswer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
		if code >= 200 && code < 300 {
			a.rewrite(code)
		}
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *digestAnswer) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.WriteHeader(http.StatusOK)
	}
	return a.ResponseWriter.Write(b)
}

func (a *digestAnswer) rewrite(code int) {
	h := a.Header()
	if h.Get("Docker-Content-Digest") != "" {
		h.Set("Docker-Content-Digest", a.want.String())
	}
	if code != http.StatusCreated || a.created == "" {
		return
	}
	loc, err := url.Parse(h.Get("Location"))
	if err != nil {
		return
	}
	if i := strings.LastIndex(loc.Path, a.created); i >= 0 {
		loc.Path = loc.Path[:i+len(a.created)] + a.want.String()
		loc.RawPath = ""
		h.Set("Location", loc.String())
	}
}
