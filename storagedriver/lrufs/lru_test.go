package lrufs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// TestEvictionLowWater fills past maxsize with layers and manifests through
// distribution's call sequences: the total never exceeds maxsize, the oldest
// go first, and eviction frees down to the low-water mark.
func TestEvictionLowWater(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), 1000, 0.5, newFakeClock())

	var paths []string
	for i := range 10 {
		var p string
		if i%2 == 0 {
			p = e.mustPushLayer(blobContent(i, 100))
		} else {
			p = e.putManifest(blobContent(i, 100))
		}
		paths = append(paths, p)
		e.clock.Advance(time.Second)
		if got := e.d.Stats().Bytes; got > 1000 {
			t.Fatalf("after blob %d: size %d > maxsize 1000", i, got)
		}
	}
	if got, want := e.d.Stats(), (Stats{Bytes: 1000, Blobs: 10, MaxSize: 1000}); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}

	// The 11th blob crosses the bound: evict down to 500-100 before writing.
	paths = append(paths, e.mustPushLayer(blobContent(10, 100)))
	if got, want := e.d.Stats(), (Stats{Bytes: 500, Blobs: 5, MaxSize: 1000}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	for i, p := range paths {
		want := i >= 6
		if got := e.exists(p); got != want {
			t.Errorf("blob %d exists = %v, want %v", i, got, want)
		}
		if !want {
			dir := filepath.Dir(filepath.Join(e.root, p))
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("blob %d: directory %s not deleted: %v", i, dir, err)
			}
		}
	}
	if got := e.metric("ecrproxy_cache_evictions_total"); got != 6 {
		t.Errorf("evictions counter %v, want 6", got)
	}
	if got := e.metric("ecrproxy_cache_evicted_bytes_total"); got != 600 {
		t.Errorf("evicted bytes counter %v, want 600", got)
	}
	size, n := e.metric("ecrproxy_cache_size_bytes"), e.metric("ecrproxy_cache_blobs")
	if size != 500 || n != 5 {
		t.Errorf("gauges report %v bytes, %v blobs; want 500, 5", size, n)
	}
}

// TestEvictionLeastRecentlyUsed checks that a read moves a blob to the
// front: the least recently used blob goes, not the oldest written.
func TestEvictionLeastRecentlyUsed(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), 300, 1, newFakeClock())
	a := e.mustPushLayer(blobContent(1, 100))
	e.clock.Advance(time.Second)
	b := e.putManifest(blobContent(2, 100))
	e.clock.Advance(time.Second)
	c := e.mustPushLayer(blobContent(3, 100))
	e.clock.Advance(time.Second)
	if got := e.read(a); !bytes.Equal(got, blobContent(1, 100)) {
		t.Fatalf("read a: wrong content")
	}
	e.clock.Advance(time.Second)
	d := e.mustPushLayer(blobContent(4, 100))

	for _, tc := range []struct {
		name string
		path string
		want bool
	}{{"a (read)", a, true}, {"b (least recently used)", b, false}, {"c", c, true}, {"d (new)", d, true}} {
		if got := e.exists(tc.path); got != tc.want {
			t.Errorf("%s exists = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestEvictionSkipsOpenReaders checks that a blob with an open Reader is
// never evicted, and that eviction catches up when the reader closes.
func TestEvictionSkipsOpenReaders(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 200, 1, newFakeClock())
	aContent := blobContent(1, 100)
	a := e.mustPushLayer(aContent)
	e.clock.Advance(time.Second)
	b := e.mustPushLayer(blobContent(2, 100))
	e.clock.Advance(time.Second)

	ra, err := e.d.Reader(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := e.d.Reader(ctx, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Both blobs are busy: the new one goes in over the bound.
	c := e.mustPushLayer(blobContent(3, 100))
	if !e.exists(a) || !e.exists(b) || !e.exists(c) {
		t.Fatalf("a busy blob was evicted")
	}
	if got := e.d.Stats().Bytes; got != 300 {
		t.Errorf("size %d, want 300 while both readers are open", got)
	}
	got, err := io.ReadAll(ra)
	if err != nil || !bytes.Equal(got, aContent) {
		t.Errorf("reading a busy blob: %d bytes, %v", len(got), err)
	}
	// Closing a releases it; a is the least recently used idle blob.
	if err := ra.Close(); err != nil {
		t.Fatal(err)
	}
	if e.exists(a) {
		t.Errorf("a still cached after its reader closed over the bound")
	}
	if got := e.d.Stats().Bytes; got != 200 {
		t.Errorf("size %d, want 200", got)
	}
	if err := rb.Close(); err != nil {
		t.Fatal(err)
	}
	if !e.exists(b) || !e.exists(c) {
		t.Errorf("b or c evicted although under the bound")
	}
}

// TestBlobLargerThanMaxSize checks that a blob larger than the whole bound is
// refused, leaving the cache as it was.
func TestBlobLargerThanMaxSize(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), 100, 1, newFakeClock())
	small := e.mustPushLayer(blobContent(1, 50))
	_, err := e.pushLayer(blobContent(2, 101))
	var se storagedriver.Error
	if !errors.As(err, &se) || !errors.Is(se.Detail, ErrBlobTooLarge) || se.DriverName != DriverName {
		t.Fatalf("pushing a blob over maxsize: err = %v, want storagedriver.Error{%s, ErrBlobTooLarge}", err, DriverName)
	}
	err = e.d.PutContent(context.Background(), dataPathOf(blobContent(3, 101)), blobContent(3, 101))
	if !errors.As(err, &se) || !errors.Is(se.Detail, ErrBlobTooLarge) {
		t.Errorf("PutContent over maxsize: err = %v, want ErrBlobTooLarge", err)
	}
	if !e.exists(small) {
		t.Errorf("refusing a large blob evicted a small one")
	}
}

// TestUploadWriteErrorSwallowed injects ENOSPC into the upload file: every
// Write still succeeds and Size counts every byte (so the proxy's
// io.MultiWriter keeps serving the client), and Commit fails with the error.
func TestUploadWriteErrorSwallowed(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 0, 0, newFakeClock())
	e.inner.failAfterFn = func(path string) int64 {
		if isUploadPath(path) {
			return 1000
		}
		return -1
	}
	upload := "/docker/registry/v2/repositories/r/_uploads/u1/data"
	w, err := e.d.Writer(ctx, upload, false)
	if err != nil {
		t.Fatal(err)
	}
	content := blobContent(1, 4096)
	for off := 0; off < len(content); off += 512 {
		n, err := w.Write(content[off : off+512])
		if n != 512 || err != nil {
			t.Fatalf("Write at %d = %d, %v; want 512, nil", off, n, err)
		}
	}
	if got := w.Size(); got != int64(len(content)) {
		t.Errorf("Size() = %d, want %d", got, len(content))
	}
	if err := w.Commit(ctx); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Commit() = %v, want ENOSPC", err)
	}
	if err := w.Cancel(ctx); err != nil {
		t.Errorf("Cancel() = %v", err)
	}
	if e.exists(upload) {
		t.Errorf("cancelled upload still exists")
	}

	// Writers outside uploads report errors as the filesystem driver does.
	e.inner.failAfterFn = func(string) int64 { return 10 }
	w, err = e.d.Writer(ctx, "/other/file", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Write outside uploads = %v, want ENOSPC", err)
	}
	_ = w.Cancel(ctx)
}

// TestRestartKeepsOrder checks that recency survives a restart: a second
// Driver on the same directory evicts in the order the first recorded.
func TestRestartKeepsOrder(t *testing.T) {
	root := t.TempDir()
	clock := newFakeClock()
	e1 := newTestEnv(t, root, 0, 0, clock)
	a := e1.mustPushLayer(blobContent(1, 100))
	clock.Advance(time.Hour)
	b := e1.putManifest(blobContent(2, 100))
	clock.Advance(time.Hour)
	c := e1.mustPushLayer(blobContent(3, 100))
	clock.Advance(time.Hour)
	e1.read(a) // a is now the most recently used
	clock.Advance(time.Hour)

	e2 := newTestEnv(t, root, 300, 1, clock)
	if got, want := e2.d.Stats(), (Stats{Bytes: 300, Blobs: 3, MaxSize: 300}); got != want {
		t.Fatalf("after restart Stats() = %+v, want %+v", got, want)
	}
	e2.mustPushLayer(blobContent(4, 100))
	if e2.exists(b) {
		t.Errorf("b (least recently used before the restart) survived")
	}
	if !e2.exists(a) || !e2.exists(c) {
		t.Errorf("a or c evicted instead of b")
	}
	e2.mustPushLayer(blobContent(5, 100))
	if e2.exists(c) || !e2.exists(a) {
		t.Errorf("second eviction: want c gone and a kept")
	}
}

// TestLoweredBoundEnforcedAtFirstWrite checks that New deletes nothing
// (garbage-collect --dry-run builds a driver) and that the first write
// enforces a bound lowered since the blobs were stored.
func TestLoweredBoundEnforcedAtFirstWrite(t *testing.T) {
	root := t.TempDir()
	clock := newFakeClock()
	e1 := newTestEnv(t, root, 0, 0, clock)
	var paths []string
	for i := range 5 {
		paths = append(paths, e1.mustPushLayer(blobContent(i, 100)))
		clock.Advance(time.Minute)
	}
	e2 := newTestEnv(t, root, 300, 0.5, clock)
	if got := e2.d.Stats().Bytes; got != 500 {
		t.Errorf("size after start %d, want 500: New must not delete", got)
	}
	for _, p := range paths {
		if !e2.exists(p) {
			t.Errorf("%s deleted at start", p)
		}
	}
	fresh := e2.mustPushLayer(blobContent(9, 100))
	if got := e2.d.Stats().Bytes; got > 150 {
		t.Errorf("size after a write %d, want at most the low water 150", got)
	}
	if !e2.exists(fresh) {
		t.Errorf("the blob just written was evicted")
	}
}

// TestTouchRateLimited checks that a use rewrites the data file's mtime only
// when the recorded one is older than TouchInterval.
func TestTouchRateLimited(t *testing.T) {
	e := newTestEnv(t, t.TempDir(), 0, 0, newFakeClock())
	p := e.mustPushLayer(blobContent(1, 100))
	mtime := func() time.Time {
		fi, err := os.Stat(filepath.Join(e.root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	t0 := e.clock.Now()
	if got := mtime(); !got.Equal(t0) {
		t.Fatalf("mtime after insert %v, want %v", got, t0)
	}
	e.clock.Advance(30 * time.Second)
	e.read(p)
	if got := mtime(); !got.Equal(t0) {
		t.Errorf("mtime rewritten 30s after the last record: %v", got)
	}
	e.clock.Advance(31 * time.Second)
	e.read(p)
	if got, want := mtime(), t0.Add(61*time.Second); !got.Equal(want) {
		t.Errorf("mtime %v, want %v", got, want)
	}
}

// TestIdenticalPutContentDoesNotRewrite checks that putting the same bytes
// again writes nothing (the file keeps its inode), while different bytes are
// written.
func TestIdenticalPutContentDoesNotRewrite(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 1<<20, 0, newFakeClock())
	link := "/docker/registry/v2/repositories/r/_manifests/tags/latest/current/link"
	manifest := blobContent(7, 300)
	inode := func(p string) uint64 {
		fi, err := os.Stat(filepath.Join(e.root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	for _, tc := range []struct {
		name    string
		path    string
		content []byte
		other   []byte
	}{
		{"tag link", link, []byte("sha256:0123"), []byte("sha256:0124")},
		{"manifest blob", dataPathOf(manifest), manifest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.inner.n("PutContent")
			if err := e.d.PutContent(ctx, tc.path, tc.content); err != nil {
				t.Fatal(err)
			}
			ino := inode(tc.path)
			for range 3 {
				if err := e.d.PutContent(ctx, tc.path, tc.content); err != nil {
					t.Fatal(err)
				}
			}
			if got := e.inner.n("PutContent") - before; got != 1 {
				t.Errorf("inner PutContent called %d times for 4 identical puts, want 1", got)
			}
			if inode(tc.path) != ino {
				t.Errorf("identical put replaced the file")
			}
			if tc.other == nil {
				return
			}
			if err := e.d.PutContent(ctx, tc.path, tc.other); err != nil {
				t.Fatal(err)
			}
			if got := e.inner.n("PutContent") - before; got != 2 {
				t.Errorf("different content not written")
			}
			got, err := e.d.GetContent(ctx, tc.path)
			if err != nil || !bytes.Equal(got, tc.other) {
				t.Errorf("GetContent = %q, %v; want %q", got, err, tc.other)
			}
		})
	}
	if got := e.d.Stats(); got.Blobs != 1 || got.Bytes != 300 {
		t.Errorf("Stats() = %+v, want one blob of 300 bytes", got)
	}
}

// TestDeleteForgets checks that deletes through the driver (garbage-collect,
// the TTL scheduler) and deletes behind its back leave the index right.
func TestDeleteForgets(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 0, 0, newFakeClock())
	a := e.mustPushLayer(blobContent(1, 100))
	b := e.mustPushLayer(blobContent(2, 100))
	c := e.putManifest(blobContent(3, 100))
	e.mustPushLayer(blobContent(4, 100))

	// Vacuum.RemoveBlob deletes the blob directory.
	if err := e.d.Delete(ctx, filepath.Dir(a)); err != nil {
		t.Fatal(err)
	}
	if got := e.d.Stats(); got.Blobs != 3 || got.Bytes != 300 {
		t.Errorf("after deleting a's directory: %+v, want 3 blobs", got)
	}
	// Another process (garbage-collect) deletes b: noticed at Stat.
	if err := os.RemoveAll(filepath.Dir(filepath.Join(e.root, b))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Stat(ctx, b); !isNotFound(err) {
		t.Fatalf("Stat of a deleted blob = %v, want PathNotFoundError", err)
	}
	if got := e.d.Stats().Blobs; got != 2 {
		t.Errorf("after an external delete and Stat: %d blobs, want 2", got)
	}
	// ... or at Reader.
	if err := os.Remove(filepath.Join(e.root, c)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Reader(ctx, c, 0); !isNotFound(err) {
		t.Errorf("Reader of a deleted blob = %v, want PathNotFoundError", err)
	}
	if got := e.d.Stats().Blobs; got != 1 {
		t.Errorf("after an external delete and Reader: %d blobs, want 1", got)
	}
	// Deleting an ancestor drops everything under it.
	if err := e.d.Delete(ctx, "/docker"); err != nil {
		t.Fatal(err)
	}
	if got := e.d.Stats(); got.Blobs != 0 || got.Bytes != 0 {
		t.Errorf("after deleting /docker: %+v, want empty", got)
	}
}

// TestUnindexedBlobIndexedOnRead checks that a blob stored by another
// process is indexed at its first read.
func TestUnindexedBlobIndexedOnRead(t *testing.T) {
	root := t.TempDir()
	e := newTestEnv(t, root, 0, 0, newFakeClock())
	other := newTestEnv(t, root, 0, 0, newFakeClock())
	p := other.mustPushLayer(blobContent(1, 123))
	if got := e.d.Stats().Blobs; got != 0 {
		t.Fatalf("blobs %d before the read, want 0", got)
	}
	e.read(p)
	if got := e.d.Stats(); got.Blobs != 1 || got.Bytes != 123 {
		t.Errorf("after the read: %+v, want one blob of 123 bytes", got)
	}
}
