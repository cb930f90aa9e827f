package lrufs

import (
	"strings"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// blobKey identifies a blob in the index: "<algorithm>/<hex>" (a blob of
// package blobpath).
type blobKey string

// blobDataKey reports whether p is a blob data file,
// /docker/registry/v2/blobs/<alg>/<hex[:2]>/<hex>/data, and returns its key.
func blobDataKey(p string) (blobKey, bool) {
	b, ok := blobpath.Data(p)
	return blobKey(b), ok
}

// keyOf validates the three directory names of a blob and returns its key.
func keyOf(alg, prefix, hex string) (blobKey, bool) {
	b, ok := blobpath.Of(alg, prefix, hex)
	return blobKey(b), ok
}

// dir returns the blob's directory, the path storage.Vacuum.RemoveBlob deletes.
func (k blobKey) dir() string { return blobpath.Dir(string(k)) }

// dataPath returns the path of the blob's data file.
func (k blobKey) dataPath() string { return blobpath.DataPath(string(k)) }

// isUploadPath reports whether p lies in a repository's _uploads directory,
// where distribution writes blobs before moving them into place.
func isUploadPath(p string) bool {
	return strings.Contains(p, "/_uploads/")
}
