package lrufs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// BenchmarkEviction pushes 64 KiB layers through distribution's call
// sequence (Writer, Commit, Move, Delete of the upload) into a cache bounded
// at 100 layers, so that every tenth push evicts ten.
func BenchmarkEviction(b *testing.B) {
	const size = 64 << 10
	clock := newFakeClock()
	e := newTestEnv(b, b.TempDir(), 100*size, 0.9, clock)
	i := 0
	b.SetBytes(size)
	for b.Loop() {
		clock.Advance(time.Second)
		if _, err := e.pushLayer(blobContent(i, size)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	if st := e.d.Stats(); st.Bytes > 100*size {
		b.Fatalf("size %d over the bound", st.Bytes)
	}
}

// writeBlobFiles writes n blob data files under root, with distinct
// modification times, and returns their blob directories.
func writeBlobFiles(b *testing.B, root string, n int) []string {
	b.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dirs := make([]string, n)
	for i := range n {
		sum := sha256.Sum256(fmt.Appendf(nil, "blob %d", i))
		h := hex.EncodeToString(sum[:])
		dirs[i] = path.Join(blobpath.Root, "sha256", h[:2], h)
		dir := filepath.Join(root, filepath.FromSlash(dirs[i]))
		if err := os.MkdirAll(dir, 0o777); err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, "data")
		if err := os.WriteFile(p, sum[:], 0o666); err != nil {
			b.Fatal(err)
		}
		mt := t0.Add(time.Duration(i*7919%n) * time.Second)
		if err := os.Chtimes(p, mt, mt); err != nil {
			b.Fatal(err)
		}
	}
	return dirs
}

// BenchmarkStartupIndex100k times New rebuilding the index from 100,000
// blob data files with distinct modification times.
func BenchmarkStartupIndex100k(b *testing.B) {
	const n = 100_000
	root := b.TempDir()
	writeBlobFiles(b, root, n)
	for b.Loop() {
		d, err := New(Parameters{RootDirectory: root, MaxSize: 1 << 40})
		if err != nil {
			b.Fatal(err)
		}
		if got := d.Stats().Blobs; got != n {
			b.Fatalf("indexed %d blobs, want %d", got, n)
		}
	}
}

// BenchmarkForgetBlobDir100k times what a Delete of one blob directory
// (garbage-collect's Vacuum.RemoveBlob) costs the index when it holds
// 100,000 blobs, without the file system: one forget, and putting the
// blob back so that the index stays at 100,000.
func BenchmarkForgetBlobDir100k(b *testing.B) {
	const n = 100_000
	e := newTestEnv(b, b.TempDir(), 0, 0, newFakeClock())
	keys := fillIndex(e.d.idx, n)
	i := 0
	for b.Loop() {
		k := keys[i%n]
		i++
		e.d.idx.forget(k.dir())
		reindex(e.d.idx, k)
	}
}

// BenchmarkGarbageCollect runs distribution's garbage-collect
// (storage.MarkAndSweep, as "registry garbage-collect" does) over a cache
// of unreferenced blobs, so that the sweep deletes every one through the
// driver. Each iteration writes the blobs and starts a Driver untimed;
// the time is the collection's. Run with -benchtime=1x.
func BenchmarkGarbageCollect(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("blobs=%d", n), func(b *testing.B) {
			// Vacuum logs every blob it deletes to logrus's standard logger.
			std := logrus.StandardLogger()
			out := std.Out
			std.SetOutput(io.Discard)
			b.Cleanup(func() { std.SetOutput(out) })
			ctx := context.Background()
			for range b.N {
				b.StopTimer()
				root := b.TempDir()
				writeBlobFiles(b, root, n)
				repo := filepath.Join(root, "docker/registry/v2/repositories/team/app")
				for _, dir := range []string{"_manifests/revisions/sha256", "_layers/sha256"} {
					if err := os.MkdirAll(filepath.Join(repo, dir), 0o777); err != nil {
						b.Fatal(err)
					}
				}
				d, err := New(Parameters{RootDirectory: root, MaxSize: 1 << 40})
				if err != nil {
					b.Fatal(err)
				}
				ns, err := storage.NewRegistry(ctx, d)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := storage.MarkAndSweep(ctx, d, ns, storage.GCOpts{Quiet: true}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if got := d.Stats().Blobs; got != 0 {
					b.Fatalf("%d blobs left after the collection, want 0", got)
				}
			}
		})
	}
}
