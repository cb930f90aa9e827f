package lrufs

import (
	"container/list"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/sirupsen/logrus"
)

// entry is one blob known to the index: stored (indexed) and/or in use
// (refs > 0). An entry stays in the map while either holds.
type entry struct {
	key     blobKey
	size    int64
	indexed bool          // counted in index.size, present in index.lru
	elem    *list.Element // position in index.lru while indexed
	refs    int           // open Readers, writes in progress
	stamped time.Time     // last use written to the data file's mtime
}

// index is the in-memory LRU of blob data. All fields are guarded by mu;
// evictions delete files while holding mu, so that a blob is never deleted
// between a reader taking a reference and opening the file.
type index struct {
	mu      sync.Mutex
	entries map[blobKey]*entry
	lru     list.List // of *entry, most recently used at the front
	size    int64     // bytes of indexed blobs

	root          string                      // filesystem root, for Chtimes
	inner         storagedriver.StorageDriver // deletes evicted blobs
	maxSize       int64
	lowWater      int64
	now           func() time.Time
	touchInterval time.Duration
	log           logrus.FieldLogger
	metrics       *driverMetrics
}

// acquire takes a reference on k, creating an unindexed entry if needed.
// A referenced blob is never evicted.
func (x *index) acquire(k blobKey) {
	x.mu.Lock()
	x.acquireLocked(k)
	x.mu.Unlock()
}

func (x *index) acquireLocked(k blobKey) *entry {
	e := x.entries[k]
	if e == nil {
		e = &entry{key: k}
		x.entries[k] = e
	}
	e.refs++
	return e
}

// release drops a reader's reference taken by acquire. If the index is over
// its bound (because busy blobs could not be evicted earlier), it evicts now,
// least recently used first.
func (x *index) release(ctx context.Context, k blobKey) {
	x.releaseKeep(ctx, k, "")
}

// releaseWrite drops a writer's reference; a bound crossed because the other
// blobs were busy is enforced without evicting the blob just written.
func (x *index) releaseWrite(ctx context.Context, k blobKey) {
	x.releaseKeep(ctx, k, k)
}

func (x *index) releaseKeep(ctx context.Context, k, keep blobKey) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.entries[k]
	if e == nil {
		return
	}
	e.refs--
	if e.refs <= 0 && !e.indexed {
		delete(x.entries, k)
	}
	if x.maxSize > 0 && x.size > x.maxSize {
		x.evictLocked(ctx, 0, keep)
	}
}

// makeRoom evicts ahead of adding size bytes for blob k (which replaces
// k's current size, if indexed). It fails with ErrBlobTooLarge if the blob
// alone exceeds the bound.
func (x *index) makeRoom(ctx context.Context, k blobKey, size int64) error {
	if x.maxSize <= 0 {
		return nil
	}
	if size > x.maxSize {
		return ErrBlobTooLarge
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	need := size
	if e := x.entries[k]; e != nil && e.indexed {
		need -= e.size
	}
	if x.size+need > x.maxSize {
		x.evictLocked(ctx, need, k)
	}
	return nil
}

// evictLocked deletes least recently used blobs that are not busy and are
// not keep, until the index plus need bytes fits under the low-water mark.
func (x *index) evictLocked(ctx context.Context, need int64, keep blobKey) {
	target := x.lowWater - need
	for el := x.lru.Back(); el != nil && x.size > target; {
		e := el.Value.(*entry)
		el = el.Prev()
		if e.refs > 0 || e.key == keep {
			continue
		}
		err := x.inner.Delete(ctx, e.key.dir())
		var nf storagedriver.PathNotFoundError
		if err != nil && !errors.As(err, &nf) {
			// Forget it anyway: a blob we cannot delete must not stop
			// eviction; a restart will find it again.
			x.log.WithError(err).WithField("blob", string(e.key)).Warn("lrufilesystem: evicting blob")
		} else {
			x.metrics.evictions.Inc()
			x.metrics.evictedBytes.Add(float64(e.size))
			x.log.WithField("blob", string(e.key)).WithField("size", e.size).Debug("lrufilesystem: evicted blob")
		}
		x.unindexLocked(e)
	}
}

// unindexLocked removes e from the LRU; the entry itself stays while it is
// referenced.
func (x *index) unindexLocked(e *entry) {
	if e.indexed {
		x.lru.Remove(e.elem)
		e.elem = nil
		e.indexed = false
		x.size -= e.size
	}
	if e.refs <= 0 {
		delete(x.entries, e.key)
	}
}

// insert records blob k as stored with the given size and used now, and
// writes the use to the data file's mtime.
func (x *index) insert(ctx context.Context, k blobKey, size int64) {
	now := x.now()
	x.mu.Lock()
	e := x.entries[k]
	if e == nil {
		e = &entry{key: k}
		x.entries[k] = e
	}
	if e.indexed {
		x.size += size - e.size
		x.lru.MoveToFront(e.elem)
	} else {
		e.elem = x.lru.PushFront(e)
		e.indexed = true
		x.size += size
	}
	e.size = size
	e.stamped = now
	if x.maxSize > 0 && x.size > x.maxSize {
		x.evictLocked(ctx, 0, k)
	}
	x.mu.Unlock()
	x.stamp(k, now)
}

// use records a read of (or a write to) blob k. It returns false if k is not
// indexed (the caller then inserts it if the file exists).
func (x *index) use(k blobKey) bool {
	now := x.now()
	x.mu.Lock()
	e := x.entries[k]
	if e == nil || !e.indexed {
		x.mu.Unlock()
		return false
	}
	x.lru.MoveToFront(e.elem)
	touch := x.touchInterval < 0 || now.Sub(e.stamped) >= x.touchInterval
	if touch {
		e.stamped = now
	}
	x.mu.Unlock()
	if touch {
		x.stamp(k, now)
	}
	return true
}

// stamp writes t as the blob's modification time, which is what a restart
// orders blobs by. A missing file is fine: the blob was deleted meanwhile.
func (x *index) stamp(k blobKey, t time.Time) {
	err := os.Chtimes(x.fullPath(k.dataPath()), t, t)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		x.log.WithError(err).WithField("blob", string(k)).Warn("lrufilesystem: recording blob use")
	}
}

// forget drops the blobs at or under p from the index (a Delete through the
// driver, or a file found missing). A blob's directory or data file (what
// garbage-collect, the TTL scheduler and eviction delete) is one map
// lookup; only a directory above the blobs (a whole algorithm or prefix,
// or an ancestor of the blobs root) costs a pass over the index.
func (x *index) forget(p string) {
	k, scope := blobScope(p)
	if scope == scopeNone {
		return // the common case: nothing indexed under p
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if scope == scopeBlob {
		if e := x.entries[k]; e != nil {
			x.unindexLocked(e)
		}
		return
	}
	for _, e := range x.entries {
		if covers(p, e.key.dataPath()) {
			x.unindexLocked(e)
		}
	}
}

// stats returns the indexed bytes and number of blobs.
func (x *index) stats() (int64, int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.size, x.lru.Len()
}

// indexExisting indexes a blob found on disk but not in the index (written
// by another process, or its index entry dropped).
func (x *index) indexExisting(ctx context.Context, k blobKey) {
	fi, err := os.Stat(x.fullPath(k.dataPath()))
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	x.insert(ctx, k, fi.Size())
}

func (x *index) fullPath(p string) string {
	return filepath.Join(x.root, filepath.FromSlash(p))
}

// load rebuilds the index from the files under blobsRoot, ordered by their
// modification times (the recorded last use). It reads directories with
// os.ReadDir and stats each data file once: no journal is needed.
func (x *index) load() error {
	type found struct {
		key   blobKey
		size  int64
		mtime time.Time
	}
	var all []found
	top := x.fullPath(blobsRoot)
	algs, err := os.ReadDir(top)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, alg := range algs {
		if !alg.IsDir() {
			continue
		}
		algDir := filepath.Join(top, alg.Name())
		prefixes, err := os.ReadDir(algDir)
		if err != nil {
			return err
		}
		for _, prefix := range prefixes {
			if !prefix.IsDir() {
				continue
			}
			prefixDir := filepath.Join(algDir, prefix.Name())
			blobs, err := os.ReadDir(prefixDir)
			if err != nil {
				return err
			}
			for _, b := range blobs {
				k, ok := keyOf(alg.Name(), prefix.Name(), b.Name())
				if !ok || !b.IsDir() {
					continue
				}
				fi, err := os.Lstat(filepath.Join(prefixDir, b.Name(), "data"))
				if err != nil {
					if errors.Is(err, fs.ErrNotExist) {
						continue
					}
					return err
				}
				if !fi.Mode().IsRegular() {
					continue
				}
				all = append(all, found{key: k, size: fi.Size(), mtime: fi.ModTime()})
			}
		}
	}
	slices.SortFunc(all, func(a, b found) int {
		if c := a.mtime.Compare(b.mtime); c != 0 {
			return c
		}
		return strings.Compare(string(a.key), string(b.key))
	})
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, f := range all {
		e := &entry{key: f.key, size: f.size, indexed: true, stamped: f.mtime}
		e.elem = x.lru.PushFront(e)
		x.entries[f.key] = e
		x.size += f.size
	}
	return nil
}
