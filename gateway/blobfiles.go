package gateway

import (
	"io"
	"net/http"
	"strings"

	"github.com/distribution/distribution/v3/health"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/blobfile"
)

// BlobFiles opens cached blobs as files: the cache's storage driver
// (lrufs.Driver.OpenLinked). A blob the repository does not link, or that
// is not on disk, is an error, and the request goes to distribution.
type BlobFiles = blobfile.Opener

// WithBlobFiles serves blob hits (GET and HEAD) from the cache's files
// with http.ServeContent, ahead of distribution's app, exactly as the app
// would answer them: the same headers (headers are the configuration's
// http.headers, which the app adds to every answer), Range, conditional
// requests, and X-Cache-Status: HIT. distribution serves a blob through a
// 4 MiB buffered reader allocated per request and copies every byte in
// user space; a file handed to ServeContent goes out by sendfile(2). The
// app's client authentication is applied through ac (nil: none); a
// request it does not authorize, and every blob that is not cached, goes
// on to the app, which answers it as before. Only without http.prefix.
func WithBlobFiles(files BlobFiles, ac distauth.AccessController, headers http.Header) Option {
	return func(h *handler) {
		h.files, h.filesAccess, h.configHeaders = files, ac, headers
	}
}

// serveBlobFile answers a GET or HEAD of a cached blob from its file and
// reports whether it did; when it did not, it wrote nothing.
func (h *handler) serveBlobFile(w http.ResponseWriter, r *http.Request) bool {
	repo, dgst, ok := blobPath(r.URL.Path)
	if !ok || len(health.CheckStatus(r.Context())) > 0 {
		return false
	}
	if h.filesAccess != nil {
		res := distauth.Resource{Type: "repository", Name: repo}
		if _, err := h.filesAccess.Authorized(r, distauth.Access{Resource: res, Action: "pull"}); err != nil {
			return false // the app answers with its challenge or refusal
		}
	}
	f, release, err := h.files.OpenLinked(r.Context(), repo, dgst)
	if err != nil {
		return false
	}
	defer release()
	defer f.Close()
	h.appHeaders(w.Header())
	blobfile.Serve(w, r, f, dgst)
	return true
}

// appHeaders sets what distribution's app adds to every answer: its API
// version and the configuration's http.headers.
func (h *handler) appHeaders(hdr http.Header) {
	hdr.Set("Docker-Distribution-API-Version", "registry/2.0")
	for k, vs := range h.configHeaders {
		for _, v := range vs {
			hdr.Add(k, v)
		}
	}
}

// blobPath splits /v2/<name>/blobs/<digest> into a valid repository name
// and digest.
func blobPath(p string) (string, digest.Digest, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/blobs/")
	if i <= 0 {
		return "", "", false
	}
	repo, d := rest[:i], rest[i+len("/blobs/"):]
	if _, err := reference.WithName(repo); err != nil {
		return "", "", false
	}
	dgst, err := digest.Parse(d)
	if err != nil {
		return "", "", false
	}
	return repo, dgst, true
}

// ReadFrom lets http.ServeContent hand a file to the connection, which
// sends it with sendfile(2) on plain HTTP/1.1.
func (w *readWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return io.Copy(io.Discard, src)
	}
	n, err := io.Copy(w.ResponseWriter, src)
	w.written += n
	return n, err
}
