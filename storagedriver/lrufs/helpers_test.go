package lrufs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// errNoSpace is the error of a write to a full disk.
var errNoSpace error = syscall.ENOSPC

// fakeClock is an injected clock that tests advance by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingDriver counts the calls that write to the inner driver.
type countingDriver struct {
	storagedriver.StorageDriver
	mu    sync.Mutex
	calls map[string]int
	// failAfterFn, if set, makes writes to a path fail with errNoSpace
	// after the returned number of bytes (-1: never).
	failAfterFn func(path string) int64
	// onDelete, if set, is called before each Delete is passed on (a test
	// holds a deletion there to see what runs meanwhile).
	onDelete func(path string)
}

func (c *countingDriver) count(op string) {
	c.mu.Lock()
	c.calls[op]++
	c.mu.Unlock()
}

func (c *countingDriver) n(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

func (c *countingDriver) PutContent(ctx context.Context, path string, content []byte) error {
	c.count("PutContent")
	return c.StorageDriver.PutContent(ctx, path, content)
}

func (c *countingDriver) Delete(ctx context.Context, path string) error {
	c.count("Delete")
	c.mu.Lock()
	hook := c.onDelete
	c.mu.Unlock()
	if hook != nil {
		hook(path)
	}
	return c.StorageDriver.Delete(ctx, path)
}

func (c *countingDriver) Writer(ctx context.Context, path string, append bool) (storagedriver.FileWriter, error) {
	c.count("Writer")
	w, err := c.StorageDriver.Writer(ctx, path, append)
	if err != nil || c.failAfter(path) < 0 {
		return w, err
	}
	return &failingWriter{FileWriter: w, left: c.failAfter(path)}, nil
}

// failAfter is overridden through failAfterFn: the byte count after which
// writes to path fail with ENOSPC, or -1.
func (c *countingDriver) failAfter(path string) int64 {
	if c.failAfterFn == nil {
		return -1
	}
	return c.failAfterFn(path)
}

// failingWriter fails writes past a byte budget with errNoSpace, like a
// full disk.
type failingWriter struct {
	storagedriver.FileWriter
	left int64
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		n, _ := w.FileWriter.Write(p[:w.left])
		w.left = 0
		return n, errNoSpace
	}
	w.left -= int64(len(p))
	return w.FileWriter.Write(p)
}

// setOnDelete sets the Delete hook.
func (c *countingDriver) setOnDelete(fn func(path string)) {
	c.mu.Lock()
	c.onDelete = fn
	c.mu.Unlock()
}

// testEnv is a Driver over a counting filesystem driver in a temp dir,
// with its metrics in a registry of its own.
type testEnv struct {
	t     testing.TB
	root  string
	clock *fakeClock
	inner *countingDriver
	d     *Driver
	reg   *prometheus.Registry
}

type envOption func(*Parameters)

func newTestEnv(t testing.TB, root string, maxSize int64, lowWater float64, clock *fakeClock, opts ...envOption) *testEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	p := Parameters{RootDirectory: root, MaxSize: maxSize, LowWater: lowWater, Now: clock.Now, Registerer: reg}
	for _, o := range opts {
		o(&p)
	}
	inner := &countingDriver{
		StorageDriver: filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}),
		calls:         map[string]int{},
	}
	d, err := newDriver(p, inner)
	if err != nil {
		t.Fatalf("newDriver: %v", err)
	}
	return &testEnv{t: t, root: root, clock: clock, inner: inner, d: d, reg: reg}
}

// blobContent returns size bytes distinct for each seed.
func blobContent(seed, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seed*31 + i*7 + i/251)
	}
	return b
}

func dataPathOf(content []byte) string {
	sum := sha256.Sum256(content)
	h := hex.EncodeToString(sum[:])
	return fmt.Sprintf("%s/sha256/%s/%s/data", blobpath.Root, h[:2], h)
}

var uploadSeq atomic.Int64

// pushLayer stores content the way distribution's proxy does on a miss:
// Writer on an upload, Commit, Close, Move into blobs, Delete the upload.
func (e *testEnv) pushLayer(content []byte) (string, error) {
	ctx := context.Background()
	dst := dataPathOf(content)
	upload := fmt.Sprintf("/docker/registry/v2/repositories/r/_uploads/u%d/data", uploadSeq.Add(1))
	w, err := e.d.Writer(ctx, upload, false)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(content); err != nil {
		return "", err
	}
	if err := w.Commit(ctx); err != nil {
		_ = w.Cancel(ctx)
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := e.d.Move(ctx, upload, dst); err != nil {
		return "", err
	}
	if err := e.d.Delete(ctx, upload[:len(upload)-len("/data")]); err != nil {
		return "", err
	}
	return dst, nil
}

func (e *testEnv) mustPushLayer(content []byte) string {
	e.t.Helper()
	p, err := e.pushLayer(content)
	if err != nil {
		e.t.Fatalf("pushing layer: %v", err)
	}
	return p
}

// putManifest stores content the way distribution stores a manifest.
func (e *testEnv) putManifest(content []byte) string {
	e.t.Helper()
	p := dataPathOf(content)
	if err := e.d.PutContent(context.Background(), p, content); err != nil {
		e.t.Fatalf("PutContent(%s): %v", p, err)
	}
	return p
}

// exists reports whether the file at p is on disk. It looks at the disk,
// not through the driver, whose Stat of blob data pins the blob.
func (e *testEnv) exists(p string) bool {
	e.t.Helper()
	_, err := os.Stat(filepath.Join(e.root, filepath.FromSlash(p)))
	if err == nil {
		return true
	}
	if !errors.Is(err, fs.ErrNotExist) {
		e.t.Fatalf("stat %s: %v", p, err)
	}
	return false
}

// metric returns the value of the counter or gauge name in e's registry.
func (e *testEnv) metric(name string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	e.t.Fatalf("metric %s not registered", name)
	return 0
}

func (e *testEnv) read(p string) []byte {
	e.t.Helper()
	rc, err := e.d.Reader(context.Background(), p, 0)
	if err != nil {
		e.t.Fatalf("Reader(%s): %v", p, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		e.t.Fatalf("reading %s: %v", p, err)
	}
	return b
}

// checkIndexMatchesDisk fails t unless the index holds exactly the blob data
// files on disk, at their sizes, and no entry is left busy or half deleted.
func checkIndexMatchesDisk(t *testing.T, e *testEnv) {
	t.Helper()
	onDisk := map[blobKey]int64{}
	err := filepath.WalkDir(filepath.Join(e.root, blobpath.Root), func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Name() != "data" {
			return nil
		}
		rel, err := filepath.Rel(e.root, p)
		if err != nil {
			return err
		}
		k, ok := blobDataKey("/" + filepath.ToSlash(rel))
		if !ok {
			t.Errorf("stray data file %s", p)
			return nil
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		onDisk[k] = fi.Size()
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	x := e.d.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	var indexed int64
	for k, en := range x.entries {
		if en.refs != 0 || en.writes != 0 || en.gone != nil || !en.indexed {
			t.Errorf("entry %s left with refs %d, writes %d, gone %v, indexed %v", k, en.refs, en.writes, en.gone != nil, en.indexed)
		}
		if size, ok := onDisk[k]; !ok || size != en.size {
			t.Errorf("index holds %s at %d bytes; on disk: %v, %d bytes", k, en.size, ok, size)
		}
		indexed += en.size
	}
	for k := range onDisk {
		if x.entries[k] == nil {
			t.Errorf("%s on disk but not indexed", k)
		}
	}
	if indexed != x.size || len(x.entries) != x.lru.Len() {
		t.Errorf("index size %d over %d LRU entries; entries hold %d bytes in %d", x.size, x.lru.Len(), indexed, len(x.entries))
	}
}
