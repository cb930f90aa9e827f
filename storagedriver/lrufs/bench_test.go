package lrufs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
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

// BenchmarkStartupIndex100k times New rebuilding the index from 100,000
// blob data files with distinct modification times.
func BenchmarkStartupIndex100k(b *testing.B) {
	const n = 100_000
	root := b.TempDir()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		sum := sha256.Sum256(fmt.Appendf(nil, "blob %d", i))
		h := hex.EncodeToString(sum[:])
		dir := filepath.Join(root, blobsRoot, "sha256", h[:2], h)
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
