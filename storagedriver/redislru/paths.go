package redislru

import (
	"path"
	"strings"
)

// blobsRoot is the directory of all blob data in distribution's layout.
const blobsRoot = "/docker/registry/v2/blobs"

// blobOf reports whether p is a blob's data file,
// …/blobs/<alg>/<hex[:2]>/<hex>/data, and returns the blob ("<alg>/<hex>").
func blobOf(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, blobsRoot+"/")
	if !ok {
		return "", false
	}
	rest, ok = strings.CutSuffix(rest, "/data")
	if !ok {
		return "", false
	}
	return blobFromParts(strings.Split(rest, "/"))
}

// blobFromParts checks <alg>, <hex[:2]>, <hex> and returns "<alg>/<hex>".
func blobFromParts(parts []string) (string, bool) {
	if len(parts) != 3 || parts[0] == "" || len(parts[2]) < 2 || parts[1] != parts[2][:2] {
		return "", false
	}
	return parts[0] + "/" + parts[2], true
}

// blobDir is the directory of blob b, what garbage-collect deletes.
func blobDir(b string) string {
	alg, hex, _ := strings.Cut(b, "/")
	return path.Join(blobsRoot, alg, hex[:2], hex)
}

// deleted returns what deleting p removes from the index: one blob (its
// directory or data file), all blobs whose directory lies under p (a
// directory above blob level), or nothing.
func deleted(p string) (blob string, under string, ok bool) {
	rest, in := strings.CutPrefix(p, blobsRoot+"/")
	if !in {
		if p == "/" || strings.HasPrefix(blobsRoot, strings.TrimSuffix(p, "/")+"/") || p == blobsRoot {
			return "", "/", true
		}
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) < 3:
		return "", p, true
	case len(parts) == 3 || (len(parts) == 4 && parts[3] == "data"):
		if b, ok := blobFromParts(parts[:3]); ok {
			return b, "", true
		}
	}
	return "", "", false
}
