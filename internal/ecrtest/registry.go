package ecrtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
)

const (
	apiVersionHeader = "Docker-Distribution-Api-Version"
	apiVersion       = "registry/2.0"
	expiredMessage   = "Your authorization token has expired. Reauthenticate and try again."
)

// serveRegistry is ECR's registry endpoint: faults, Basic authentication,
// then the ECR-specific behaviour of each route in front of the backing
// distribution registry.
func (e *Emulator) serveRegistry(w http.ResponseWriter, r *http.Request) {
	rt := classify(r.Method, r.URL.Path)
	e.count(rt.kind)
	if status, ok := e.takeRegistryFault(); ok {
		writeRegistryFault(w, status)
		return
	}
	switch e.refusal(e.authenticate(r)) {
	case tokenUnknown:
		writeChallenge(w, r)
		return
	case tokenExpired:
		writeOCIError(w, http.StatusForbidden, "DENIED", expiredMessage)
		return
	}
	r.Header.Del("Authorization") // the backing registry has no auth
	// Digests other than sha256, with WithSHA512 (sha512.go).
	w, r, done := e.otherDigests(w, r, rt)
	if done {
		return
	}

	switch rt.kind {
	case KindBlobGET:
		e.redirectBlob(w, r, rt)
	case KindBlobHEAD:
		if e.cfg.headRedirect {
			e.redirectBlob(w, r, rt)
			return
		}
		e.backing.ServeHTTP(w, r)
	case KindTagsList:
		e.serveTags(w, r)
	case KindReferrers:
		e.serveReferrers(w, r, rt)
	case KindBlobDELETE:
		// ECR removes layers with their images (BatchDeleteImage,
		// lifecycle policies); its registry API has no blob DELETE.
		writeOCIError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
	case KindUpload:
		e.serveUpload(w, r, rt)
	case KindManifestGET:
		if !e.cfg.manifestDigestOnGET {
			w = &headerDropper{ResponseWriter: w, drop: "Docker-Content-Digest"}
		}
		e.mu.Lock()
		fault := e.manifestFault
		e.mu.Unlock()
		if fault.padTo > 0 || fault.wrongDigest {
			serveTampered(w, r, e.backing, fault)
			return
		}
		e.backing.ServeHTTP(w, r)
	default:
		e.backing.ServeHTTP(w, r)
	}
}

func (e *Emulator) takeRegistryFault() (status int, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !takeFault(&e.failRegistry) {
		return 0, false
	}
	return e.failStatus, true
}

// authenticate checks Basic "AWS:<password>" against the minted tokens.
func (e *Emulator) authenticate(r *http.Request) tokenState {
	user, password, ok := r.BasicAuth()
	if !ok || user != "AWS" || password == "" {
		return tokenUnknown
	}
	return e.checkToken(password)
}

// writeChallenge answers 401 exactly like ECR.
func writeChallenge(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Www-Authenticate", fmt.Sprintf(`Basic realm="https://%s/",service="ecr.amazonaws.com"`, r.Host))
	h.Set(apiVersionHeader, apiVersion)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", "15")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte("Not Authorized\n"))
}

type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeOCIError writes {"errors":[{"code","message"}]}.
func writeOCIError(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(struct {
		Errors []ociError `json:"errors"`
	}{Errors: []ociError{{Code: code, Message: message}}})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set(apiVersionHeader, apiVersion)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeRegistryFault(w http.ResponseWriter, status int) {
	code := "UNKNOWN"
	switch status {
	case http.StatusTooManyRequests:
		code = "TOOMANYREQUESTS"
		w.Header().Set("Retry-After", "1")
	case http.StatusServiceUnavailable:
		code = "UNAVAILABLE"
		w.Header().Set("Retry-After", "1")
	case http.StatusUnauthorized, http.StatusForbidden:
		code = "DENIED"
	}
	writeOCIError(w, status, code, "emulated fault: "+http.StatusText(status))
}

// redirectBlob answers 307 to a presigned S3 URL when the blob exists, and
// lets the backing registry answer (404 BLOB_UNKNOWN) otherwise.
func (e *Emulator) redirectBlob(w http.ResponseWriter, r *http.Request, rt route) {
	head := r.Clone(r.Context())
	head.Method = http.MethodHead
	rec := httptest.NewRecorder()
	e.backing.ServeHTTP(rec, head)
	if rec.Code != http.StatusOK {
		e.backing.ServeHTTP(w, r)
		return
	}
	loc, err := e.presign(rt.name, rt.ref)
	if err != nil {
		writeOCIError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Location", loc)
	w.Header().Set(apiVersionHeader, apiVersion)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// serveTags applies the emulator's page size when the client sends no n;
// distribution then paginates and adds the Link header itself.
func (e *Emulator) serveTags(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("n") == "" {
		q.Set("n", strconv.Itoa(e.cfg.tagsPageSize))
		r = r.Clone(r.Context())
		r.URL.RawQuery = q.Encode()
		r.RequestURI = r.URL.RequestURI()
	}
	e.backing.ServeHTTP(w, r)
}

// headerDropper removes one header before the response is written.
type headerDropper struct {
	http.ResponseWriter
	drop string
}

func (h *headerDropper) WriteHeader(code int) {
	h.Header().Del(h.drop)
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerDropper) Write(b []byte) (int, error) {
	h.Header().Del(h.drop)
	return h.ResponseWriter.Write(b)
}
