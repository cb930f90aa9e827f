package lrufs

import (
	"path"
	"strings"
)

// BlobsRoot is the directory of all blob data in distribution's layout
// (registry/storage/paths.go); garbage-collect's scan walks it too.
const BlobsRoot = "/docker/registry/v2/blobs"

// blobKey identifies a blob in the index: "<algorithm>/<hex>".
type blobKey string

// blobDataKey reports whether p is a blob data file,
// /docker/registry/v2/blobs/<alg>/<hex[:2]>/<hex>/data, and returns its key.
func blobDataKey(p string) (blobKey, bool) {
	rest, ok := strings.CutPrefix(p, BlobsRoot+"/")
	if !ok {
		return "", false
	}
	rest, ok = strings.CutSuffix(rest, "/data")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", false
	}
	return keyOf(parts[0], parts[1], parts[2])
}

// keyOf validates the three directory names of a blob and returns its key.
func keyOf(alg, prefix, hex string) (blobKey, bool) {
	if alg == "" || len(prefix) != 2 || len(hex) < 2 || hex[:2] != prefix {
		return "", false
	}
	return blobKey(alg + "/" + hex), true
}

// dir returns the blob's directory, the path storage.Vacuum.RemoveBlob deletes.
func (k blobKey) dir() string {
	alg, hex, _ := strings.Cut(string(k), "/")
	return path.Join(BlobsRoot, alg, hex[:2], hex)
}

// dataPath returns the path of the blob's data file.
func (k blobKey) dataPath() string {
	return k.dir() + "/data"
}

// isUploadPath reports whether p lies in a repository's _uploads directory,
// where distribution writes blobs before moving them into place.
func isUploadPath(p string) bool {
	return strings.Contains(p, "/_uploads/")
}

// covers reports whether deleting the path del removes the path p (del is p
// or one of its ancestors).
func covers(del, p string) bool {
	if del == "/" || del == p {
		return true
	}
	return strings.HasPrefix(p, del+"/")
}

// scope is what a deleted path covers in the index.
type scope int

const (
	scopeNone scope = iota // no blob data
	scopeBlob              // the data of one blob: its directory or data file
	scopeMany              // possibly many blobs: a directory above blob level
)

// blobScope classifies p for forget: a blob's directory
// (blobs/<alg>/<xx>/<hex>) or data file names its key; a path inside a
// blob's directory other than its data, or outside the blobs root, covers
// no blob data; the blobs root, an algorithm or prefix directory below it,
// or an ancestor of it may cover many.
func blobScope(p string) (blobKey, scope) {
	rest, ok := strings.CutPrefix(p, BlobsRoot+"/")
	if !ok {
		if covers(p, BlobsRoot) {
			return "", scopeMany
		}
		return "", scopeNone
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) < 3:
		return "", scopeMany
	case len(parts) == 3 || (len(parts) == 4 && parts[3] == "data"):
		if k, ok := keyOf(parts[0], parts[1], parts[2]); ok {
			return k, scopeBlob
		}
	}
	return "", scopeNone
}
