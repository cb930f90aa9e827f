package lrufs

import (
	"context"
	"errors"
	"fmt"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// deleteReason says why a blob leaves the cache.
type deleteReason int

const (
	reasonEvicted deleteReason = iota // least recently used, to stay under maxsize
	reasonCorrupt                     // its data file no longer matches the blob
)

// pickVictimsLocked chooses least recently used blobs that are not busy,
// pinned or keep, until the index plus the reservations plus need bytes
// fits under the low-water mark. It takes them out of the index and marks them gone; the caller
// deletes them with deleteAll after releasing mu, so that eviction never
// holds the lock during a deletion.
func (x *index) pickVictimsLocked(need int64, keep blobKey) []*entry {
	target := x.lowWater - need
	now := x.now()
	var victims []*entry
	for el := x.lru.Back(); el != nil && x.size+x.reserved > target; {
		e := el.Value.(*entry)
		el = el.Prev()
		if e.refs > 0 || e.key == keep || e.pinned.After(now) {
			continue
		}
		x.markGoneLocked(e)
		victims = append(victims, e)
	}
	return victims
}

// markGoneLocked takes e out of the index and marks it as being deleted.
func (x *index) markGoneLocked(e *entry) {
	e.gone = make(chan struct{}) // first: unindexLocked keeps the entry
	e.dropped = true
	x.unindexLocked(e)
}

// deleteAll deletes the directories of victims (marked gone), one at a
// time, without holding the lock, and ends each one's gone state when its
// deletion is over.
func (x *index) deleteAll(ctx context.Context, victims []*entry, why deleteReason) {
	for _, e := range victims {
		_ = x.deleteGone(ctx, e, why) // logged
	}
}

// deleteGone deletes the directory of e, which markGoneLocked marked, then
// ends its gone state: waiting writers go on, readers find it missing. It
// returns the error of a deletion that failed (a directory already gone is
// not one).
func (x *index) deleteGone(ctx context.Context, e *entry, why deleteReason) error {
	// A deletion is not cancelled with the request that caused it: the
	// blob is out of the index and must leave the disk too.
	err := x.inner.Delete(context.WithoutCancel(ctx), e.key.dir())
	log := x.log.WithField("blob", string(e.key)).WithField("size", e.size)
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		err = nil
	}
	switch {
	case err != nil:
		// Forget it anyway: a blob we cannot delete must not stop
		// eviction; a restart will find it again.
		log.WithError(err).Warn("lrufilesystem: deleting blob")
	case why == reasonCorrupt:
		x.metrics.corrupt.Inc()
		log.Warn("lrufilesystem: dropped a blob whose data file changed on disk; it is fetched again on its next pull")
	default:
		x.metrics.evictions.Inc()
		x.metrics.evictedBytes.Add(float64(e.size))
		log.Debug("lrufilesystem: evicted blob")
	}
	x.mu.Lock()
	close(e.gone)
	e.gone = nil
	x.dropIdleLocked(e)
	x.mu.Unlock()
	if err != nil {
		return fmt.Errorf("deleting %s: %w", e.key.dir(), err)
	}
	return nil
}

// peek returns what a Stat sees of k before it looks at the file, and
// whether k is being deleted.
func (x *index) peek(k blobKey) (seen, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e := x.entries[k]; e != nil {
		return seen{gen: e.gen, indexed: e.indexed}, e.gone != nil
	}
	return seen{}, false
}

// sizeOK judges k's data file, found at size after the index was seen as
// before, against the index. It reports false, after deleting the blob's
// directory and dropping it from the index, when the index holds k at
// another size and no write started or ended since (so the file changed
// behind the driver's back: truncated, or rewritten). It also reports
// false when k is being deleted, or was indexed before and is not any
// more (evicted or deleted meanwhile). Otherwise (a blob the index does
// not hold, or one written meanwhile) it reports true. pin, if set,
// protects an indexed k from eviction for statPin.
func (x *index) sizeOK(ctx context.Context, k blobKey, before seen, size int64, pin bool) bool {
	x.mu.Lock()
	e := x.entries[k]
	switch {
	case e == nil || !e.indexed:
		x.mu.Unlock()
		return !before.indexed && (e == nil || e.gone == nil)
	case e.writes > 0 || e.gen != before.gen || e.size == size:
		if pin {
			e.pinned = x.now().Add(statPin)
		}
		x.mu.Unlock()
		return true
	}
	want := e.size
	x.markGoneLocked(e)
	x.mu.Unlock()
	x.log.WithField("blob", string(k)).WithField("size", size).WithField("indexed_size", want).
		Warn("lrufilesystem: blob data file has changed size on disk")
	_ = x.deleteGone(ctx, e, reasonCorrupt) // logged
	return false
}

// dropCorrupt deletes blob k, found not to match its digest, unless a write
// to it is in progress or k is already being deleted. It reports whether
// this call deleted k.
func (x *index) dropCorrupt(ctx context.Context, k blobKey) (bool, error) {
	x.mu.Lock()
	e := x.entryLocked(k)
	if e.gone != nil || e.writes > 0 {
		x.dropIdleLocked(e)
		x.mu.Unlock()
		return false, fmt.Errorf("blob %s is being written or deleted", k)
	}
	x.markGoneLocked(e)
	x.mu.Unlock()
	if err := x.deleteGone(ctx, e, reasonCorrupt); err != nil {
		return false, err
	}
	return true, nil
}
