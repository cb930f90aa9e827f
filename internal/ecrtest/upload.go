package ecrtest

import (
	"io"
	"net/http"
	"sync/atomic"
)

// MinPartSize is ECR's minimum size of every upload part but the last.
const MinPartSize = 5 << 20

// partTooSmallMessage is the message of ECR's LayerPartTooSmallException.
// The registry answers it as 400 BLOB_UPLOAD_INVALID (a distribution-spec
// code clients know), since ECR's registry-side code is not documented.
const partTooSmallMessage = "All layer parts except the last part should be at least 5MB"

// serveUpload implements ECR's push differences: mounting is dropped unless
// enabled, PATCH answers 201, and a part following a part under 5 MiB is
// refused (the earlier part turned out not to be the last).
func (e *Emulator) serveUpload(w http.ResponseWriter, r *http.Request, rt route) {
	switch r.Method {
	case http.MethodPost:
		q := r.URL.Query()
		if !e.cfg.blobMounting && (q.Has("mount") || q.Has("from")) {
			q.Del("mount")
			q.Del("from")
			r = r.Clone(r.Context())
			r.URL.RawQuery = q.Encode()
			r.RequestURI = r.URL.RequestURI()
		}
		e.backing.ServeHTTP(w, r)
	case http.MethodPatch:
		if e.previousPartTooSmall(rt.ref) {
			writeOCIError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", partTooSmallMessage)
			return
		}
		body := &countingReader{r: r.Body}
		r.Body = body
		sw := &statusWriter{ResponseWriter: w, rewrite: map[int]int{http.StatusAccepted: http.StatusCreated}}
		e.backing.ServeHTTP(sw, r)
		if sw.status == http.StatusCreated {
			e.mu.Lock()
			e.uploads[rt.ref] = body.n.Load()
			e.mu.Unlock()
		}
	case http.MethodPut:
		if r.ContentLength != 0 && e.previousPartTooSmall(rt.ref) {
			writeOCIError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", partTooSmallMessage)
			return
		}
		e.forgetUpload(rt.ref)
		e.backing.ServeHTTP(w, r)
	case http.MethodDelete:
		e.forgetUpload(rt.ref)
		e.backing.ServeHTTP(w, r)
	default:
		e.backing.ServeHTTP(w, r)
	}
}

func (e *Emulator) previousPartTooSmall(uuid string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, ok := e.uploads[uuid]
	return ok && n < MinPartSize
}

func (e *Emulator) forgetUpload(uuid string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.uploads, uuid)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// statusWriter records the status and rewrites some status codes.
type statusWriter struct {
	http.ResponseWriter
	rewrite map[int]int
	status  int
}

func (s *statusWriter) WriteHeader(code int) {
	if to, ok := s.rewrite[code]; ok {
		code = to
	}
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
