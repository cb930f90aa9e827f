package lrufs

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// TestConcurrentReadersWritersEviction pushes and reads blobs from many
// goroutines while eviction runs (run it with -race): a reader gets either
// the full, correct content or PathNotFoundError, never a short or empty
// body; afterwards the index matches the disk and respects the bound.
func TestConcurrentReadersWritersEviction(t *testing.T) {
	const (
		blobs     = 40
		blobSize  = 4096
		maxSize   = 12 * blobSize
		writers   = 4
		readers   = 6
		perWriter = 60
		perReader = 200
	)
	clock := newFakeClock()
	e := newTestEnv(t, t.TempDir(), maxSize, 0.75, clock, func(p *Parameters) { p.TouchInterval = -1 })
	contents := make([][]byte, blobs)
	paths := make([]string, blobs)
	for i := range contents {
		contents[i] = blobContent(i, blobSize-i) // distinct sizes
		paths[i] = dataPathOf(contents[i])
	}

	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers)
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range perWriter {
				i := r.IntN(blobs)
				clock.Advance(time.Millisecond)
				var err error
				if i%4 == 0 {
					err = e.d.PutContent(ctx, paths[i], contents[i])
				} else {
					_, err = e.pushLayer(contents[i])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var found, missing sync.Map
	for rd := range readers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(rd), 2))
			for range perReader {
				i := r.IntN(blobs)
				offset := int64(r.IntN(2) * 100)
				rc, err := e.d.Reader(ctx, paths[i], offset)
				if isNotFound(err) {
					missing.Store(i, true)
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, contents[i][offset:]) {
					t.Errorf("blob %d at offset %d: read %d bytes (%v), want %d", i, offset, len(got), err, len(contents[i])-int(offset))
					return
				}
				found.Store(i, true)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	st := e.d.Stats()
	if st.Bytes > maxSize {
		t.Errorf("size %d > maxsize %d with no reader open", st.Bytes, maxSize)
	}
	var onDisk int64
	var n int
	err := filepath.WalkDir(filepath.Join(e.root, blobpath.Root), func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Name() == "data" {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			onDisk += fi.Size()
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if onDisk != st.Bytes || n != st.Blobs {
		t.Errorf("disk holds %d blobs, %d bytes; index says %+v", n, onDisk, st)
	}
	e.d.idx.mu.Lock()
	for k, en := range e.d.idx.entries {
		if en.refs != 0 || !en.indexed {
			t.Errorf("entry %s left with refs %d, indexed %v", k, en.refs, en.indexed)
		}
	}
	e.d.idx.mu.Unlock()
	t.Logf("%d blobs cached at the end, %d bytes", st.Blobs, st.Bytes)
}
