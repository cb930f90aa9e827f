package lrufs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// fillIndex adds n blobs to x's index directly, as a restart would find
// them, without files; it returns their keys.
func fillIndex(x *index, n int) []blobKey {
	keys := make([]blobKey, n)
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range keys {
		sum := sha256.Sum256(fmt.Appendf(nil, "blob %d", i))
		k := blobKey("sha256/" + hex.EncodeToString(sum[:]))
		e := &entry{key: k, size: 1, indexed: true}
		e.elem = x.lru.PushFront(e)
		x.entries[k] = e
		x.size++
		keys[i] = k
	}
	return keys
}

// reindex puts the entry of k, forgotten, back into the index.
func reindex(x *index, k blobKey) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := &entry{key: k, size: 1, indexed: true}
	e.elem = x.lru.PushFront(e)
	x.entries[k] = e
	x.size++
}

// TestForgetBlobDirectoryIsALookup: dropping a deleted blob directory
// (what garbage-collect's Vacuum.RemoveBlob and the TTL scheduler delete)
// from an index of 10,000 blobs does not visit them all. Before, each
// delete compared the path with every indexed blob, allocating its path:
// at 100,000 blobs that was ~0.1 s per delete, hours for a large
// garbage-collect.
func TestForgetBlobDirectoryIsALookup(t *testing.T) {
	const n = 10_000
	e := newTestEnv(t, t.TempDir(), 0, 0, newFakeClock())
	keys := fillIndex(e.d.idx, n)
	i := 0
	allocs := testing.AllocsPerRun(50, func() {
		k := keys[i%n]
		i++
		e.d.idx.forget(k.dir())
		reindex(e.d.idx, k)
	})
	if allocs > n/100 {
		t.Errorf("forgetting one blob directory in an index of %d blobs: %v allocations, want a lookup", n, allocs)
	}
	if got := e.d.Stats().Blobs; got != n {
		t.Errorf("%d blobs indexed, want %d", got, n)
	}
}

// TestForgetScopes checks what a Delete through the driver drops: a blob's
// directory or data file that blob; a prefix or algorithm directory, or an
// ancestor of the blobs, every blob under it; a path inside a blob's
// directory other than its data, or elsewhere, nothing.
func TestForgetScopes(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 0, 0, newFakeClock())
	var paths []string
	for i := range 40 {
		paths = append(paths, e.mustPushLayer(blobContent(i, 10)))
	}
	n := len(paths)
	del := func(p string, wantGone int) {
		t.Helper()
		if err := e.d.Delete(ctx, p); err != nil && !isNotFound(err) {
			t.Fatalf("Delete(%s): %v", p, err)
		}
		n -= wantGone
		if got := e.d.Stats().Blobs; got != n {
			t.Errorf("after Delete(%s): %d blobs, want %d", p, got, n)
		}
		checkIndexMatchesDisk(t, e)
	}
	del(path.Dir(paths[0]), 1)
	del(paths[1], 1)
	del(path.Dir(paths[2])+"/other", 0)
	del("/docker/registry/v2/repositories", 0)
	prefix := path.Dir(path.Dir(paths[3]))
	under := 0
	for _, p := range paths[3:] {
		if path.Dir(path.Dir(p)) == prefix {
			under++
		}
	}
	del(prefix, under)
	del(blobpath.Root+"/sha256", n)
}
