package lrufs

import (
	"context"
	"errors"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// pickVictimsLocked chooses least recently used blobs that are not busy,
// pinned or keep, until the index plus need bytes fits under the low-water
// mark. It takes them out of the index and marks them gone; the caller
// deletes them with deleteAll after releasing mu, so that eviction never
// holds the lock during a deletion.
func (x *index) pickVictimsLocked(need int64, keep blobKey) []*entry {
	target := x.lowWater - need
	now := x.now()
	var victims []*entry
	for el := x.lru.Back(); el != nil && x.size > target; {
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
	x.unindexLocked(e)
}

// deleteAll deletes the directories of victims (marked gone), one at a
// time, without holding the lock, and ends each one's gone state when its
// deletion is over.
func (x *index) deleteAll(ctx context.Context, victims []*entry) {
	for _, e := range victims {
		x.deleteGone(ctx, e)
	}
}

// deleteGone deletes the directory of e, which markGoneLocked marked, then
// ends its gone state: waiting writers go on, readers find it missing.
func (x *index) deleteGone(ctx context.Context, e *entry) {
	// A deletion is not cancelled with the request that caused it: the
	// blob is out of the index and must leave the disk too.
	err := x.inner.Delete(context.WithoutCancel(ctx), e.key.dir())
	log := x.log.WithField("blob", string(e.key)).WithField("size", e.size)
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		// Forget it anyway: a blob we cannot delete must not stop
		// eviction; a restart will find it again.
		log.WithError(err).Warn("lrufilesystem: evicting blob")
	} else {
		x.metrics.evictions.Inc()
		x.metrics.evictedBytes.Add(float64(e.size))
		log.Debug("lrufilesystem: evicted blob")
	}
	x.mu.Lock()
	close(e.gone)
	e.gone = nil
	x.dropIdleLocked(e)
	x.mu.Unlock()
}

// statted records a Stat that found k's data: an indexed k is pinned
// against eviction for statPin. It reports false when k is being deleted
// (the Stat raced with its eviction): the caller reports it missing.
func (x *index) statted(k blobKey) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.entries[k]
	switch {
	case e == nil:
		return true
	case e.gone != nil:
		return false
	case e.indexed:
		e.pinned = x.now().Add(statPin)
	}
	return true
}

// gone reports whether k is being deleted.
func (x *index) gone(k blobKey) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.entries[k]
	return e != nil && e.gone != nil
}
