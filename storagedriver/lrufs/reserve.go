package lrufs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Reserve holds room in the cache for file, a blob being written outside
// the driver (a download's or a push's spool) that Adopt may later take
// in: size is the whole room file needs, and a later call for the same
// file with a larger size grows the reservation. Reserved bytes count
// against maxsize like cached blobs, so that blobs being written plus
// blobs cached never exceed it: Reserve first evicts least recently used
// blobs, as a write of size bytes would, and returns once they are
// deleted. Adopt of file turns the reservation into the blob's place in
// the index; Unreserve releases it (a failed or cancelled write).
//
// Reserve fails, reserving nothing more, with ErrBlobTooLarge when size
// alone exceeds maxsize, with ErrCacheFull when blobs in use and other
// reservations leave no room under maxsize, and with ErrNoSpace (which
// matches syscall.ENOSPC) when the filesystem of file lacks the free
// space for what is reserved there and not yet written. The caller then
// does not cache the blob.
func (d *Driver) Reserve(ctx context.Context, file string, size int64) error {
	x := d.idx
	x.mu.Lock()
	have := x.reservations[file]
	grow := size - have
	if grow <= 0 {
		x.mu.Unlock()
		return nil
	}
	if x.maxSize > 0 && size > x.maxSize {
		x.mu.Unlock()
		return fmt.Errorf("reserving %d bytes under maxsize %d: %w", size, x.maxSize, ErrBlobTooLarge)
	}
	if x.maxSize > 0 && !x.canFitLocked(grow) {
		indexed, reserved := x.size, x.reserved
		x.mu.Unlock()
		return fmt.Errorf("reserving %d bytes: %d bytes of blobs, those in use not evictable, and %d reserved leave no room under maxsize %d: %w",
			size, indexed, reserved, x.maxSize, ErrCacheFull)
	}
	x.reservations[file] = size
	x.reserved += grow
	var victims []*entry
	if x.overLocked() {
		victims = x.pickVictimsLocked(0, "")
	}
	x.mu.Unlock()
	x.deleteAll(ctx, victims, reasonEvicted)
	if err := x.checkFree(file); err != nil {
		x.shrink(file, have)
		return fmt.Errorf("reserving %d bytes: %w", size, err)
	}
	return nil
}

// Unreserve releases the room reserved for file, if any.
func (d *Driver) Unreserve(file string) {
	d.idx.mu.Lock()
	defer d.idx.mu.Unlock()
	d.idx.unreserveLocked(file)
}

// Reserved returns the bytes reserved for files being written.
func (d *Driver) Reserved() int64 {
	d.idx.mu.Lock()
	defer d.idx.mu.Unlock()
	return d.idx.reserved
}

// canFitLocked reports whether grow more bytes fit under maxSize once the
// blobs eviction may delete (neither busy nor pinned) are gone, so that a
// reservation that cannot be made evicts nothing.
func (x *index) canFitLocked(grow int64) bool {
	excess := x.size + x.reserved + grow - x.maxSize
	now := x.now()
	for el := x.lru.Back(); el != nil && excess > 0; el = el.Prev() {
		e := el.Value.(*entry)
		if e.refs == 0 && !e.pinned.After(now) {
			excess -= e.size
		}
	}
	return excess <= 0
}

// unreserveLocked releases the reservation of file.
func (x *index) unreserveLocked(file string) {
	if n, ok := x.reservations[file]; ok {
		x.reserved -= n
		delete(x.reservations, file)
	}
}

// shrink sets the reservation of file back to size (0: none).
func (x *index) shrink(file string, size int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.unreserveLocked(file)
	if size > 0 {
		x.reservations[file] = size
		x.reserved += size
	}
}

// checkFree checks that the filesystem of file has the free space for
// what is reserved on it and not yet written: each reserved file's
// reservation less its current size.
func (x *index) checkFree(file string) error {
	dir := filepath.Dir(file)
	x.mu.Lock()
	pending := make(map[string]int64, len(x.reservations))
	for f, n := range x.reservations {
		if filepath.Dir(f) == dir {
			pending[f] = n
		}
	}
	x.mu.Unlock()
	var unwritten int64
	for f, n := range pending {
		if fi, err := os.Stat(f); err == nil {
			n -= min(fi.Size(), n)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stat %s: %w", f, err)
		}
		unwritten += n
	}
	free, err := x.freeSpace(dir)
	if err != nil {
		return fmt.Errorf("free space under %s: %w", dir, err)
	}
	if free < unwritten {
		return fmt.Errorf("%w: %d bytes free under %s, %d reserved and not yet written", ErrNoSpace, free, dir, unwritten)
	}
	return nil
}

// availableBytes is the space an unprivileged process may still write
// on the filesystem of dir (statfs f_bavail).
func availableBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil //nolint:gosec // block counts and sizes of a real filesystem fit an int64
}
