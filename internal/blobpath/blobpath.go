// Package blobpath reads the paths of blob data in distribution's storage
// layout (registry/storage/paths.go):
// /docker/registry/v2/blobs/<algorithm>/<hex[:2]>/<hex>/data. The cache
// drivers (lrufs, redislru) and garbage-collect's scan share it.
package blobpath

import (
	"path"
	"strings"
)

// Root is the directory of all blob data.
const Root = "/docker/registry/v2/blobs"

// Data reports whether p is a blob's data file and returns the blob,
// "<algorithm>/<hex>".
func Data(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, Root+"/")
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
	return Of(parts[0], parts[1], parts[2])
}

// Of checks the three directory names of a blob (algorithm, the first two
// hex digits, the hex digest) and returns the blob.
func Of(alg, prefix, hex string) (string, bool) {
	if alg == "" || len(prefix) != 2 || len(hex) < 2 || hex[:2] != prefix {
		return "", false
	}
	return alg + "/" + hex, true
}

// Dir returns the directory of blob b, the path distribution's
// garbage-collect (storage.Vacuum.RemoveBlob) deletes.
func Dir(b string) string {
	alg, hex, _ := strings.Cut(b, "/")
	return path.Join(Root, alg, hex[:2], hex)
}

// DataPath returns the path of the data file of blob b.
func DataPath(b string) string {
	return Dir(b) + "/data"
}

// Covers reports whether deleting the path del removes the path p (del is
// p or one of its ancestors).
func Covers(del, p string) bool {
	if del == "/" || del == p {
		return true
	}
	return strings.HasPrefix(p, del+"/")
}

// Scope is what deleting a path removes of the blob data.
type Scope int

// The scopes of a deleted path.
const (
	None Scope = iota // no blob data
	One               // the data of one blob: its directory or data file
	Many              // possibly many blobs: a directory above blob level
)

// Deleted classifies a deleted path p: a blob's directory or data file
// names the blob (One); a path inside a blob's directory other than its
// data, or outside Root, removes no blob data (None); Root, an algorithm
// or prefix directory below it, or an ancestor of it may remove many
// (Many; Covers tells which).
func Deleted(p string) (string, Scope) {
	rest, ok := strings.CutPrefix(p, Root+"/")
	if !ok {
		if Covers(p, Root) {
			return "", Many
		}
		return "", None
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) < 3:
		return "", Many
	case len(parts) == 3 || (len(parts) == 4 && parts[3] == "data"):
		if b, ok := Of(parts[0], parts[1], parts[2]); ok {
			return b, One
		}
	}
	return "", None
}
