package ecrtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"
)

// maxManifest bounds a manifest body read by the referrers recorder.
const maxManifest = 4 << 20

// referrer is a manifest that names another as its subject.
type referrer struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// recordReferrers wraps the backing registry, which has no referrers API
// (distribution v3.1.2): a manifest stored with a subject is remembered as
// a referrer of that subject, for GET /v2/<name>/referrers/<digest>.
func (e *Emulator) recordReferrers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := classify(r.Method, r.URL.Path)
		if rt.kind != KindManifestPUT {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m struct {
			MediaType    string                     `json:"mediaType"`
			ArtifactType string                     `json:"artifactType"`
			Config       struct{ MediaType string } `json:"config"`
			Subject      *struct{ Digest string }   `json:"subject"`
			Annotations  map[string]string          `json:"annotations"`
		}
		if err := json.Unmarshal(body, &m); err != nil || m.Subject == nil {
			next.ServeHTTP(w, r)
			return
		}
		// ECR, like the distribution spec, names the subject it saw.
		w.Header().Set("OCI-Subject", m.Subject.Digest)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status != http.StatusCreated {
			return
		}
		at := m.ArtifactType
		if at == "" {
			at = m.Config.MediaType
		}
		ref := referrer{MediaType: m.MediaType, Digest: digest.FromBytes(body).String(), Size: int64(len(body)),
			ArtifactType: at, Annotations: m.Annotations}
		e.mu.Lock()
		defer e.mu.Unlock()
		key := rt.name + "@" + m.Subject.Digest
		e.referrers[key] = append(e.referrers[key], ref)
	})
}

// serveReferrers answers ECR's referrers API: an OCI index of the
// manifests whose subject is the digest, filtered by artifactType.
func (e *Emulator) serveReferrers(w http.ResponseWriter, r *http.Request, rt route) {
	if _, err := digest.Parse(rt.ref); err != nil {
		writeOCIError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest")
		return
	}
	filter := r.URL.Query().Get("artifactType")
	e.mu.Lock()
	manifests := []referrer{}
	for _, ref := range e.referrers[rt.name+"@"+rt.ref] {
		if filter == "" || ref.ArtifactType == filter {
			manifests = append(manifests, ref)
		}
	}
	e.mu.Unlock()
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	_ = json.NewEncoder(w).Encode(struct {
		SchemaVersion int        `json:"schemaVersion"`
		MediaType     string     `json:"mediaType"`
		Manifests     []referrer `json:"manifests"`
	}{2, "application/vnd.oci.image.index.v1+json", manifests})
}
