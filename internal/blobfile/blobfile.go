// Package blobfile serves a cached blob from its data file, answering as
// distribution's blob server does (registry/storage/blobserver.go) but
// with http.ServeContent on the *os.File itself: no 4 MiB buffered
// reader per request, and sendfile(2) when the response writer lets the
// file through (io.ReaderFrom down to the connection).
package blobfile

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// Opener opens the data file of a blob that a repository links
// (lrufs.Driver.OpenLinked). release must be called once the file is no
// longer read; until then the cache does not evict the blob.
type Opener interface {
	OpenLinked(ctx context.Context, repo string, dgst digest.Digest) (f *os.File, release func(), err error)
}

// cacheControl is what distribution's blob server sends: blobs are
// content-addressed and never change.
const cacheControl = "max-age=31536000"

// Serve answers a GET or HEAD of blob dgst from f, with distribution's
// headers (Content-Type, ETag, Cache-Control, Docker-Content-Digest),
// Range and conditional requests as http.ServeContent handles them.
func Serve(w http.ResponseWriter, r *http.Request, f *os.File, dgst digest.Digest) {
	hdr := w.Header()
	hdr.Set("Content-Type", wire.OctetStream)
	hdr.Set("ETag", `"`+dgst.String()+`"`)
	hdr.Set("Cache-Control", cacheControl)
	hdr.Set("Docker-Content-Digest", dgst.String())
	http.ServeContent(w, r, "", time.Time{}, f)
}
