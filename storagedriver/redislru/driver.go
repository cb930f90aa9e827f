package redislru

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/redis/go-redis/v9"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// ErrBlobTooLarge refuses a blob larger than maxsize on its own.
var ErrBlobTooLarge = errors.New("blob larger than the shared cache's maxsize")

// ErrCacheFull refuses a blob when no room can be made: every blob was
// used within evictgrace, or another replica's eviction did not end.
var ErrCacheFull = errors.New("no room in the shared cache under maxsize")

// leasePoll is how often a writer waiting for another replica's eviction
// looks whether it is over.
const leasePoll = 20 * time.Millisecond

// victimsPerRound is how many eviction candidates one Redis call fetches.
const victimsPerRound = 32

// Driver wraps a storage driver, keeping its blob data under a
// cluster-wide bound (see the package documentation).
type Driver struct {
	storagedriver.StorageDriver
	ix *index
	p  Parameters
}

var _ storagedriver.StorageDriver = (*Driver)(nil)

// New wraps inner; rdb is the shared Redis. p.MaxSize is required.
func New(inner storagedriver.StorageDriver, rdb redis.UniversalClient, p Parameters) (*Driver, error) {
	if inner == nil || rdb == nil {
		return nil, errors.New("redislru: a storage driver and a redis client are required")
	}
	if p.MaxSize <= 0 {
		return nil, errors.New("redislru: maxsize is required")
	}
	p = p.withDefaults()
	d := &Driver{StorageDriver: inner, ix: newIndex(rdb, p), p: p}
	p.State.OnRecover(func() { d.rebuildLogged(context.Background(), true) })
	return d, nil
}

// RebuildLogged runs Rebuild and logs what it did; for the start of a
// replica, when an emptied Redis is refilled. (When Redis answers again,
// the driver walks the store on its own: see rebuild.)
func (d *Driver) RebuildLogged(ctx context.Context) { d.rebuildLogged(ctx, false) }

// rebuildLogged is RebuildLogged; again as for rebuild (the return of
// Redis: the blobs written while it was unreachable are indexed).
func (d *Driver) rebuildLogged(ctx context.Context, again bool) {
	n, err := d.rebuild(ctx, again)
	switch {
	case err != nil:
		d.p.Logger.WithError(err).Warn("rebuild the shared cache index from the store")
	case n > 0:
		d.p.Logger.WithField("blobs", n).Info("rebuilt the shared cache index from the store: the blobs it lacked are indexed")
	}
}

// Size is the bytes of blob data the shared index counts (reservations
// of writes in progress included).
func (d *Driver) Size(ctx context.Context) (int64, error) { return d.ix.totalSize(ctx) }

// Health is nil while Redis answers, and says since when and why not
// otherwise: the cache then works without its shared bound.
func (d *Driver) Health() error { return d.ix.health() }

// GetContent reads through the wrapped driver and records a use.
func (d *Driver) GetContent(ctx context.Context, path string) ([]byte, error) {
	data, err := d.StorageDriver.GetContent(ctx, path)
	if b, ok := blobpath.Data(path); ok {
		d.afterRead(ctx, b, int64(len(data)), err)
	}
	return data, err
}

// Reader opens through the wrapped driver and records a use.
func (d *Driver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	rc, err := d.StorageDriver.Reader(ctx, path, offset)
	if b, ok := blobpath.Data(path); ok {
		d.afterRead(ctx, b, -1, err)
	}
	return rc, err
}

// RedirectURL is a use too: the client reads the blob from the store.
func (d *Driver) RedirectURL(r *http.Request, path string) (string, error) {
	u, err := d.StorageDriver.RedirectURL(r, path)
	if b, ok := blobpath.Data(path); ok && err == nil && u != "" {
		d.afterRead(r.Context(), b, -1, nil)
	}
	return u, err
}

// Stat drops a blob whose data is missing from the index.
func (d *Driver) Stat(ctx context.Context, path string) (storagedriver.FileInfo, error) {
	fi, err := d.StorageDriver.Stat(ctx, path)
	if b, ok := blobpath.Data(path); ok && isNotFound(err) {
		_, _ = d.ix.forget(ctx, b, time.Time{})
	}
	return fi, err
}

// PutContent makes room, writes, and indexes blob data (manifests).
func (d *Driver) PutContent(ctx context.Context, path string, content []byte) error {
	b, ok := blobpath.Data(path)
	if !ok {
		return d.StorageDriver.PutContent(ctx, path, content)
	}
	size := int64(len(content))
	token, err := d.makeRoom(ctx, size)
	if err != nil {
		return err
	}
	return d.reserved(ctx, b, size, token, func() error { return d.StorageDriver.PutContent(ctx, path, content) })
}

// Move makes room, moves, and indexes an upload moved into place.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	b, ok := blobpath.Data(dst)
	if !ok {
		return d.StorageDriver.Move(ctx, src, dst)
	}
	fi, err := d.StorageDriver.Stat(ctx, src)
	if err != nil {
		return err
	}
	token, err := d.makeRoom(ctx, fi.Size())
	if err != nil {
		return err
	}
	return d.reserved(ctx, b, fi.Size(), token, func() error { return d.StorageDriver.Move(ctx, src, dst) })
}

// reserved runs write, the write of blob b of size under the reservation
// token ("" for none), extending the reservation while it runs; then
// indexes b, or gives the reservation back if write failed.
func (d *Driver) reserved(ctx context.Context, b string, size int64, token string, write func() error) error {
	var err error
	if token == "" {
		err = write()
	} else {
		stop := d.keepReserved(ctx, token)
		err = write()
		stop()
	}
	if err != nil {
		if token != "" {
			d.ix.unreserve(ctx, token)
		}
		return err
	}
	_, _ = d.ix.record(ctx, b, size, token)
	return nil
}

// keepReserved extends the reservation token every third of ReserveTTL
// until the returned function is called.
func (d *Driver) keepReserved(ctx context.Context, token string) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(d.p.ReserveTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				d.ix.extend(ctx, token)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-ended }
}

// Delete deletes through the wrapped driver and drops what it removed
// from the index.
func (d *Driver) Delete(ctx context.Context, path string) error {
	err := d.StorageDriver.Delete(ctx, path)
	if err != nil && !isNotFound(err) {
		return err
	}
	switch blob, scope := blobpath.Deleted(path); scope {
	case blobpath.One:
		_, _ = d.ix.forget(ctx, blob, time.Time{})
	case blobpath.Many:
		_ = d.ix.members(ctx, func(b string) error {
			if blobpath.Covers(path, blobpath.Dir(b)) {
				_, _ = d.ix.forget(ctx, b, time.Time{})
			}
			return nil
		})
	}
	return err
}

// afterRead records a use of b after a read that returned err; size is
// the blob's size when known (-1: Stat it if the index lacks it).
func (d *Driver) afterRead(ctx context.Context, b string, size int64, err error) {
	if isNotFound(err) {
		_, _ = d.ix.forget(ctx, b, time.Time{})
		return
	}
	if err != nil {
		return
	}
	indexed, terr := d.ix.touch(ctx, b)
	if terr != nil || indexed {
		return
	}
	if size < 0 {
		fi, serr := d.StorageDriver.Stat(ctx, blobpath.DataPath(b))
		if serr != nil {
			return
		}
		size = fi.Size()
	}
	_, _ = d.ix.record(ctx, b, size, "")
}

// makeRoom reserves size bytes in the index's total, evicting first
// when they do not fit under maxsize, and returns the reservation's
// token ("": none). Without Redis it lets the write through unreserved.
// Reservations past their deadline (of writers that died) are dropped
// before the room is computed.
func (d *Driver) makeRoom(ctx context.Context, size int64) (string, error) {
	if size > d.p.MaxSize {
		return "", fmt.Errorf("%w: %d bytes, maxsize %d", ErrBlobTooLarge, size, d.p.MaxSize)
	}
	target := int64(d.p.LowWater*float64(d.p.MaxSize)) - size
	for {
		token, err := d.ix.reserve(ctx, size)
		if err != nil {
			return "", nil //nolint:nilerr // without Redis, the write goes on unbounded (package doc)
		}
		if token != "" {
			return token, nil
		}
		l, err := d.ix.acquire(ctx)
		if err != nil {
			return "", nil //nolint:nilerr // as above
		}
		if l == nil {
			if !d.waitEviction(ctx) {
				return "", fmt.Errorf("%w: another replica's eviction did not end", ErrCacheFull)
			}
			continue
		}
		freed := d.evict(ctx, l, target)
		l.release(ctx)
		if !freed {
			return "", fmt.Errorf("%w: every blob was used within evictgrace", ErrCacheFull)
		}
	}
}

// waitEviction waits until no replica holds the eviction lease, for at
// most the lease's deadline; false if it is still held.
func (d *Driver) waitEviction(ctx context.Context) bool {
	deadline := time.NewTimer(d.p.LeaseTTL)
	defer deadline.Stop()
	tick := time.NewTicker(leasePoll)
	defer tick.Stop()
	for d.ix.leaseHeld(ctx) {
		select {
		case <-tick.C:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// evict deletes least recently used blobs, holding the lease l, until the
// index counts at most target bytes, and reports whether it freed any.
func (d *Driver) evict(ctx context.Context, l *lease, target int64) bool {
	freed := false
	for {
		total, err := d.ix.totalSize(ctx)
		if err != nil || total <= target {
			return freed
		}
		cutoff := d.p.Now()
		if d.p.EvictGrace > 0 {
			cutoff = cutoff.Add(-d.p.EvictGrace)
		}
		victims, err := d.ix.oldest(ctx, cutoff, victimsPerRound)
		if err != nil {
			return freed
		}
		if len(victims) == 0 {
			d.p.Logger.WithField("total", total).Warn("shared cache full: every blob was used within evictgrace")
			return freed
		}
		for _, v := range victims {
			if total <= target {
				return true
			}
			n, err := d.ix.forget(ctx, v, cutoff)
			if err != nil {
				return freed
			}
			if n < 0 {
				continue // used since it was chosen
			}
			if err := d.StorageDriver.Delete(ctx, blobpath.Dir(v)); err != nil && !isNotFound(err) {
				d.p.Logger.WithError(err).WithField("blob", v).Warn("evict: delete blob")
			} else {
				d.p.Logger.WithField("blob", v).WithField("bytes", n).Debug("evicted")
			}
			total -= n
			freed = true
			if d.p.OnEvict != nil {
				d.p.OnEvict(n)
			}
			if !l.renew(ctx) {
				return freed
			}
		}
	}
}

// Reconcile drops from the index every blob whose data the store no
// longer has (deleted by garbage-collect, which bypasses this driver),
// sets the total to the sum of the sizes indexed (dropping reservations
// of writers that died), and returns how many blobs it dropped. Run it
// while no replica writes.
func (d *Driver) Reconcile(ctx context.Context) (int, error) {
	var gone []string
	err := d.ix.members(ctx, func(b string) error {
		_, err := d.StorageDriver.Stat(ctx, blobpath.DataPath(b))
		switch {
		case isNotFound(err):
			gone = append(gone, b)
		case err != nil:
			return fmt.Errorf("stat blob %s: %w", b, err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, b := range gone {
		if _, err := d.ix.forget(ctx, b, time.Time{}); err != nil {
			return 0, err
		}
	}
	if err := d.ix.recount(ctx); err != nil {
		return 0, fmt.Errorf("recount: %w", err)
	}
	return len(gone), nil
}

// isNotFound reports a driver's PathNotFoundError.
func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}
