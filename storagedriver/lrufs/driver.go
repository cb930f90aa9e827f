package lrufs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/base"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/ecr-proxy/ecr-proxy/internal/logx"
)

// DriverName is the name the driver is registered under, the key of the
// storage section in distribution's configuration.
const DriverName = "lrufilesystem"

func init() {
	factory.Register(DriverName, &lruDriverFactory{})
}

// lruDriverFactory implements factory.StorageDriverFactory.
type lruDriverFactory struct{}

func (lruDriverFactory) Create(ctx context.Context, parameters map[string]any) (storagedriver.StorageDriver, error) {
	return FromParameters(parameters)
}

// driver adds LRU accounting to a filesystem driver. It is wrapped in
// base.Base, which validates paths and stamps errors with DriverName.
type driver struct {
	storagedriver.StorageDriver // the filesystem driver
	idx                         *index
}

type baseEmbed struct {
	base.Base
}

// Driver is a storagedriver.StorageDriver that stores exactly like
// distribution's filesystem driver and keeps the blob data under a size bound
// by deleting the least recently used blobs. See the package documentation.
type Driver struct {
	baseEmbed
	idx *index
}

var (
	_ storagedriver.StorageDriver = (*Driver)(nil)
	_ storagedriver.StorageDriver = (*driver)(nil)
)

// FromParameters constructs a Driver from the parameters of distribution's
// storage configuration: rootdirectory, maxsize, lowwater and maxthreads (see
// Parameters). It returns an error naming the parameter for a bad value.
func FromParameters(parameters map[string]any) (*Driver, error) {
	params, err := fromParametersImpl(parameters)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", DriverName, err)
	}
	return New(params)
}

// New constructs a Driver and rebuilds its index from the blob data files
// under params.RootDirectory (a walk of the blob directories, ordered by the
// files' modification times). It deletes nothing, even when the stored
// blobs exceed MaxSize (a bound lowered since they were stored): the first
// write evicts down to the low-water mark. So a driver built only to read,
// such as garbage-collect's with --dry-run, never changes the cache.
func New(params Parameters) (*Driver, error) {
	params, err := params.withDefaults()
	if err != nil {
		return nil, err
	}
	fs := filesystem.New(filesystem.DriverParameters{
		RootDirectory: params.RootDirectory,
		MaxThreads:    max(params.MaxThreads, minThreads),
	})
	return newDriver(params, fs)
}

// withDefaults validates p and fills in the defaults of its zero fields.
func (p Parameters) withDefaults() (Parameters, error) {
	if p.RootDirectory == "" {
		p.RootDirectory = defaultRootDirectory
	}
	if p.MaxSize < 0 {
		return p, fmt.Errorf("%s: maxsize %d: must not be negative", DriverName, p.MaxSize)
	}
	if p.LowWater == 0 {
		p.LowWater = defaultLowWater
	}
	if !(p.LowWater > 0 && p.LowWater <= 1) {
		return p, fmt.Errorf("%s: lowwater %v: must be in (0, 1]", DriverName, p.LowWater)
	}
	if p.MaxThreads == 0 {
		p.MaxThreads = defaultMaxThreads
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.TouchInterval == 0 {
		p.TouchInterval = defaultTouchInterval
	}
	if p.Logger == nil {
		p.Logger = logx.Discard()
	}
	return p, nil
}

// newDriver wraps inner, which must store under params.RootDirectory (tests
// pass a decorated filesystem driver).
func newDriver(params Parameters, inner storagedriver.StorageDriver) (*Driver, error) {
	params, err := params.withDefaults()
	if err != nil {
		return nil, err
	}
	idx := &index{
		entries:       make(map[blobKey]*entry),
		root:          params.RootDirectory,
		inner:         inner,
		maxSize:       params.MaxSize,
		lowWater:      int64(params.LowWater * float64(params.MaxSize)),
		now:           params.Now,
		touchInterval: params.TouchInterval,
		log:           params.Logger,
		metrics:       newDriverMetrics(),
		reservations:  make(map[string]int64),
		freeSpace:     availableBytes,
	}
	if err := idx.load(); err != nil {
		return nil, fmt.Errorf("%s: indexing %s: %w", DriverName, params.RootDirectory, err)
	}
	if params.Registerer != nil {
		if err := idx.metrics.register(params.Registerer, idx); err != nil {
			params.Logger.WithError(err).Warn("lrufilesystem: registering metrics")
		}
	}
	d := &driver{StorageDriver: inner, idx: idx}
	return &Driver{baseEmbed: baseEmbed{base.Base{StorageDriver: d}}, idx: idx}, nil
}

// Stats describes the blob data a Driver accounts for.
type Stats struct {
	// Bytes is the size of all indexed blob data files.
	Bytes int64
	// Blobs is the number of indexed blobs.
	Blobs int
	// MaxSize is the configured bound; 0 means unbounded.
	MaxSize int64
}

// Stats returns the current size of the cache.
func (d *Driver) Stats() Stats {
	size, n := d.idx.stats()
	return Stats{Bytes: size, Blobs: n, MaxSize: d.idx.maxSize}
}

// RootDirectory returns the directory the Driver stores under.
func (d *Driver) RootDirectory() string {
	return d.idx.root
}

// Name returns DriverName.
func (d *driver) Name() string {
	return DriverName
}

// isNotFound reports whether err is the driver's PathNotFoundError value.
func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// notFound is the error of a missing path. It stays a bare
// storagedriver.PathNotFoundError value: distribution type-switches on it.
func notFound(path string) error {
	return storagedriver.PathNotFoundError{Path: path, DriverName: DriverName}
}

// GetContent reads a whole file; reading blob data counts as a use. Blob
// data of another size than the index holds is dropped and reported
// missing (see sizeOK).
func (d *driver) GetContent(ctx context.Context, path string) ([]byte, error) {
	k, ok := blobDataKey(path)
	if !ok {
		return d.StorageDriver.GetContent(ctx, path)
	}
	before, ok := d.idx.acquireRead(k)
	if !ok {
		return nil, notFound(path)
	}
	defer d.idx.release(ctx, k)
	b, err := d.StorageDriver.GetContent(ctx, path)
	if err != nil {
		if isNotFound(err) {
			d.idx.forget(path)
		}
		return nil, err
	}
	if !d.idx.sizeOK(ctx, k, before, int64(len(b)), false) {
		return nil, notFound(path)
	}
	d.idx.metrics.blobReads.Inc()
	if !d.idx.use(k) {
		d.idx.insert(ctx, k, int64(len(b)))
	}
	return b, nil
}

// PutContent writes a file unless it already holds exactly content, in which
// case it only sets the file's modification time (distribution's proxy
// rewrites the same tag links on every pull; a rewrite costs two fsyncs).
// Writing blob data (a manifest) evicts ahead of the write and indexes the
// blob.
func (d *driver) PutContent(ctx context.Context, path string, content []byte) error {
	k, isBlob := blobDataKey(path)
	if !isBlob {
		if d.sameContent(path, content) {
			// Only the modification time, as a rewrite would set it.
			now := d.idx.now()
			if err := os.Chtimes(d.idx.fullPath(path), now, now); err == nil {
				return nil
			}
		}
		return d.StorageDriver.PutContent(ctx, path, content)
	}
	if err := d.idx.makeRoom(ctx, k, int64(len(content))); err != nil {
		return fmt.Errorf("caching %s (%d bytes): %w", path, len(content), err)
	}
	if err := d.idx.acquireWrite(ctx, k); err != nil {
		return err
	}
	defer d.idx.releaseWrite(ctx, k)
	if !d.sameContent(path, content) {
		if err := d.StorageDriver.PutContent(ctx, path, content); err != nil {
			return err
		}
	}
	d.idx.insert(ctx, k, int64(len(content)))
	return nil
}

// sameContent reports whether the file at path holds exactly content,
// comparing sizes before bytes.
func (d *driver) sameContent(path string, content []byte) bool {
	full := d.idx.fullPath(path)
	fi, err := os.Lstat(full)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(content)) {
		return false
	}
	have, err := os.ReadFile(full) //nolint:gosec // a path inside the driver's root, validated by base.Base
	return err == nil && bytes.Equal(have, content)
}

// Reader opens a file. For blob data it holds a reference until Close, so
// the blob is not evicted while it is read, and counts as a use. Blob data
// of another size than the index holds is dropped and reported missing, so
// that distribution fetches it again (see sizeOK).
func (d *driver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	k, ok := blobDataKey(path)
	if !ok {
		return d.StorageDriver.Reader(ctx, path, offset)
	}
	before, ok := d.idx.acquireRead(k)
	if !ok {
		return nil, notFound(path)
	}
	rc, err := d.StorageDriver.Reader(ctx, path, offset)
	if err != nil {
		if isNotFound(err) {
			d.idx.forget(path)
		}
		d.idx.release(ctx, k)
		return nil, err
	}
	size, known := d.openSize(rc, path)
	if known && !d.idx.sizeOK(ctx, k, before, size, false) {
		_ = rc.Close()
		d.idx.release(ctx, k)
		return nil, notFound(path)
	}
	d.idx.metrics.blobReads.Inc()
	if !d.idx.use(k) {
		if known {
			d.idx.insert(ctx, k, size)
		} else {
			d.idx.indexExisting(ctx, k)
		}
	}
	return &blobReader{ReadCloser: rc, release: func() { d.idx.release(ctx, k) }}, nil
}

// openSize returns the size of the file rc reads (the filesystem driver's
// Reader is an *os.File), else of the file at path.
func (d *driver) openSize(rc io.ReadCloser, path string) (int64, bool) {
	var fi os.FileInfo
	var err error
	if f, ok := rc.(interface{ Stat() (os.FileInfo, error) }); ok {
		fi, err = f.Stat()
	} else {
		fi, err = os.Stat(d.idx.fullPath(path))
	}
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}

// blobReader releases its blob's reference on Close.
type blobReader struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (r *blobReader) Close() error {
	err := r.ReadCloser.Close()
	r.once.Do(r.release)
	return err
}

// Writer returns a FileWriter. Writing blob data directly holds a reference
// and indexes the blob at Commit; writing an upload swallows write errors
// until Commit (see uploadWriter).
func (d *driver) Writer(ctx context.Context, path string, append bool) (storagedriver.FileWriter, error) {
	if k, ok := blobDataKey(path); ok {
		if err := d.idx.acquireWrite(ctx, k); err != nil {
			return nil, err
		}
		w, err := d.StorageDriver.Writer(ctx, path, append)
		if err != nil {
			d.idx.releaseWrite(ctx, k)
			return nil, err
		}
		return &blobWriter{FileWriter: w, d: d, key: k}, nil
	}
	w, err := d.StorageDriver.Writer(ctx, path, append)
	if err != nil || !isUploadPath(path) {
		return w, err
	}
	return &uploadWriter{FileWriter: w, size: w.Size()}, nil
}

// Stat returns file info. For blob data: a blob in the index whose data is
// gone (deleted by garbage-collect in another process) is dropped from the
// index; data of another size than the index holds is dropped and reported
// missing; and a found blob is pinned for statPin, so that it is not
// evicted between distribution's Stat and its Reader.
func (d *driver) Stat(ctx context.Context, path string) (storagedriver.FileInfo, error) {
	k, isBlob := blobDataKey(path)
	if !isBlob {
		return d.StorageDriver.Stat(ctx, path)
	}
	before, gone := d.idx.peek(k)
	if gone {
		return nil, notFound(path)
	}
	fi, err := d.StorageDriver.Stat(ctx, path)
	switch {
	case isNotFound(err):
		d.idx.forget(path)
	case err != nil || fi.IsDir():
	case !d.idx.sizeOK(ctx, k, before, fi.Size(), true):
		return nil, notFound(path)
	}
	return fi, err
}

// Move renames a file. Moving into blob data (distribution's upload commit)
// evicts ahead to make room and indexes the blob.
func (d *driver) Move(ctx context.Context, sourcePath string, destPath string) error {
	k, isBlob := blobDataKey(destPath)
	if !isBlob {
		err := d.StorageDriver.Move(ctx, sourcePath, destPath)
		if err == nil {
			d.idx.forget(sourcePath)
			d.idx.forget(destPath)
		}
		return err
	}
	fi, err := d.StorageDriver.Stat(ctx, sourcePath)
	if err != nil {
		return err
	}
	size := fi.Size()
	if err := d.idx.makeRoom(ctx, k, size); err != nil {
		return fmt.Errorf("caching %s (%d bytes): %w", destPath, size, err)
	}
	if err := d.idx.acquireWrite(ctx, k); err != nil {
		return err
	}
	defer d.idx.releaseWrite(ctx, k)
	if err := d.StorageDriver.Move(ctx, sourcePath, destPath); err != nil {
		return err
	}
	d.idx.forget(sourcePath)
	d.idx.insert(ctx, k, size)
	return nil
}

// Delete removes a path recursively and drops the blobs under it from the
// index (garbage-collect and the TTL scheduler delete blob directories).
func (d *driver) Delete(ctx context.Context, path string) error {
	err := d.StorageDriver.Delete(ctx, path)
	if err == nil || isNotFound(err) {
		d.idx.forget(path)
	}
	return err
}
