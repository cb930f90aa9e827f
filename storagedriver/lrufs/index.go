package lrufs

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// statPin is how long a Stat of blob data keeps the blob from eviction:
// distribution stats a blob, writes the response headers, then opens its
// Reader, and a blob evicted in between would be a 200 with a cut body.
const statPin = 10 * time.Second

// entry is one blob known to the index: stored (indexed), in use
// (refs > 0), and/or being deleted (gone != nil). An entry stays in the
// map while any of these holds.
type entry struct {
	key     blobKey
	size    int64
	indexed bool          // counted in index.size, present in index.lru
	elem    *list.Element // position in index.lru while indexed
	refs    int           // open Readers, writes in progress
	writes  int           // of refs, writes in progress: the file may not be size bytes
	gen     uint64        // changed when a write starts or ends (index.seq)
	stamped time.Time     // last use written to the data file's mtime
	pinned  time.Time     // not evicted before this time (a Stat of its data)
	dropped bool          // deleted since its last write: readers must not index it again
	// gone is non-nil while the blob's directory is being deleted (evicted,
	// or dropped as corrupt), outside the lock; it is closed when the
	// deletion is over. Meanwhile readers find the blob missing and writers
	// wait, so that nobody resurrects it or writes data the deletion removes.
	gone chan struct{}
}

// index is the in-memory LRU of blob data. All fields are guarded by mu.
// Files are deleted outside mu: a blob chosen for deletion is first taken
// out of the LRU and marked gone under mu (see entry.gone).
type index struct {
	mu      sync.Mutex
	entries map[blobKey]*entry
	lru     list.List // of *entry, most recently used at the front
	size    int64     // bytes of indexed blobs
	seq     uint64    // last write generation handed out
	// reserved is the room held for files being written outside the
	// driver (spools), counted against maxSize like indexed blobs;
	// reservations holds it per file.
	reserved     int64
	reservations map[string]int64

	root          string                      // filesystem root, for Chtimes
	inner         storagedriver.StorageDriver // deletes evicted blobs
	maxSize       int64
	lowWater      int64
	now           func() time.Time
	touchInterval time.Duration
	log           logrus.FieldLogger
	metrics       *driverMetrics
	freeSpace     func(dir string) (int64, error) // bytes available to this process under dir
}

// overLocked reports whether the indexed blobs and the reservations
// exceed the bound.
func (x *index) overLocked() bool {
	return x.maxSize > 0 && x.size+x.reserved > x.maxSize
}

// entryLocked returns k's entry, creating an unindexed one if needed.
func (x *index) entryLocked(k blobKey) *entry {
	e := x.entries[k]
	if e == nil {
		e = &entry{key: k}
		x.entries[k] = e
	}
	return e
}

// seen is what an open of blob data saw of the blob's entry before it
// looked at the file, for sizeOK to judge the file by.
type seen struct {
	gen     uint64 // the entry's write generation
	indexed bool   // whether the index held the blob
}

// acquireRead takes a reader's reference on k, so that it is not evicted
// until release, and returns what it saw of k (see sizeOK). It fails when
// k is being deleted: the caller reports the blob missing.
func (x *index) acquireRead(k blobKey) (seen, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e := x.entries[k]; e != nil && e.gone != nil {
		return seen{}, false
	}
	e := x.entryLocked(k)
	e.refs++
	return seen{gen: e.gen, indexed: e.indexed}, true
}

// acquireWrite takes a writer's reference on k, first waiting for a
// deletion of k in progress to finish, so that the deletion cannot remove
// what is written. Release it with releaseWrite.
func (x *index) acquireWrite(ctx context.Context, k blobKey) error {
	for {
		x.mu.Lock()
		e := x.entries[k]
		if e == nil || e.gone == nil {
			break
		}
		gone := e.gone
		x.mu.Unlock()
		select {
		case <-gone:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the deletion of blob %s: %w", k, ctx.Err())
		}
	}
	defer x.mu.Unlock()
	e := x.entryLocked(k)
	e.refs++
	e.writes++
	e.dropped = false
	x.seq++
	e.gen = x.seq
	return nil
}

// release drops a reader's reference taken by acquireRead. If the index is
// over its bound (because busy blobs could not be evicted earlier), it
// evicts now, least recently used first.
func (x *index) release(ctx context.Context, k blobKey) {
	x.releaseRef(ctx, k, false)
}

// releaseWrite drops a writer's reference; a bound crossed because the other
// blobs were busy is enforced without evicting the blob just written.
func (x *index) releaseWrite(ctx context.Context, k blobKey) {
	x.releaseRef(ctx, k, true)
}

func (x *index) releaseRef(ctx context.Context, k blobKey, write bool) {
	x.mu.Lock()
	e := x.entries[k]
	if e == nil {
		x.mu.Unlock()
		return
	}
	e.refs--
	var keep blobKey
	if write {
		e.writes--
		x.seq++
		e.gen = x.seq
		keep = k
	}
	x.dropIdleLocked(e)
	var victims []*entry
	if x.overLocked() {
		victims = x.pickVictimsLocked(0, keep)
	}
	x.mu.Unlock()
	x.deleteAll(ctx, victims, reasonEvicted)
}

// dropIdleLocked removes e from the map once nothing holds it.
func (x *index) dropIdleLocked(e *entry) {
	if e.refs <= 0 && !e.indexed && e.gone == nil && x.entries[e.key] == e {
		delete(x.entries, e.key)
	}
}

// makeRoom evicts ahead of adding size bytes for blob k (which replaces
// k's current size, if indexed), and returns once the evicted blobs are
// deleted. It fails with ErrBlobTooLarge if the blob alone exceeds the
// bound. Reserved room counts as used.
func (x *index) makeRoom(ctx context.Context, k blobKey, size int64) error {
	if x.maxSize <= 0 {
		return nil
	}
	if size > x.maxSize {
		return ErrBlobTooLarge
	}
	x.mu.Lock()
	need := size
	if e := x.entries[k]; e != nil && e.indexed {
		need -= e.size
	}
	var victims []*entry
	if x.size+x.reserved+need > x.maxSize {
		victims = x.pickVictimsLocked(need, k)
	}
	x.mu.Unlock()
	x.deleteAll(ctx, victims, reasonEvicted)
	return nil
}

// unindexLocked removes e from the LRU; the entry itself stays while it is
// referenced or being deleted.
func (x *index) unindexLocked(e *entry) {
	if e.indexed {
		x.lru.Remove(e.elem)
		e.elem = nil
		e.indexed = false
		x.size -= e.size
	}
	x.dropIdleLocked(e)
}

// insert records blob k as stored with the given size and used now, and
// writes the use to the data file's mtime. A blob being deleted, or deleted
// while a reader held it, is not indexed again by a reader: it is going, or
// gone, from the disk.
func (x *index) insert(ctx context.Context, k blobKey, size int64) {
	x.insertFor(ctx, k, size, "")
}

// insertFor is insert that also drops the reservation of file (when file
// is not empty) in the same critical section: the reserved room becomes
// the blob's, and no other writer can take it in between.
func (x *index) insertFor(ctx context.Context, k blobKey, size int64, file string) {
	now := x.now()
	x.mu.Lock()
	if file != "" {
		x.unreserveLocked(file)
	}
	e := x.entryLocked(k)
	if e.gone != nil || (e.dropped && e.writes == 0) {
		x.mu.Unlock()
		return
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
	var victims []*entry
	if x.overLocked() {
		victims = x.pickVictimsLocked(0, k)
	}
	x.mu.Unlock()
	x.stamp(k, now)
	x.deleteAll(ctx, victims, reasonEvicted)
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
	b, scope := blobpath.Deleted(p)
	if scope == blobpath.None {
		return // the common case: nothing indexed under p
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if scope == blobpath.One {
		if e := x.entries[blobKey(b)]; e != nil {
			x.unindexLocked(e)
		}
		return
	}
	for _, e := range x.entries {
		if blobpath.Covers(p, e.key.dataPath()) {
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

// storedBlob is a blob data file found on disk.
type storedBlob struct {
	key   blobKey
	size  int64
	mtime time.Time
}

// load rebuilds the index from the files under blobpath.Root, ordered by their
// modification times (the recorded last use). It reads directories with
// os.ReadDir and stats each data file once: no journal is needed.
func (x *index) load() error {
	var all []storedBlob
	err := x.scan(context.Background(), func(b storedBlob) error {
		all = append(all, b)
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b storedBlob) int {
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

// scan calls fn for every blob data file on disk (a regular file at
// blobs/<alg>/<xx>/<hex>/data), in directory order. A blob deleted during
// the scan is skipped.
func (x *index) scan(ctx context.Context, fn func(storedBlob) error) error {
	top := x.fullPath(blobpath.Root)
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
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := scanPrefix(filepath.Join(algDir, prefix.Name()), alg.Name(), prefix.Name(), fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanPrefix calls fn for the blob data files in one blobs/<alg>/<xx>
// directory.
func scanPrefix(dir, alg, prefix string, fn func(storedBlob) error) error {
	blobs, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, b := range blobs {
		k, ok := keyOf(alg, prefix, b.Name())
		if !ok || !b.IsDir() {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, b.Name(), "data"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if err := fn(storedBlob{key: k, size: fi.Size(), mtime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}
