package lrufs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
)

// emptySpool creates an empty spool file beside the cache, as a download
// does before it reserves room and writes.
func emptySpool(t *testing.T, root string) string {
	t.Helper()
	return spoolFile(t, root, nil)
}

// writeFile writes content to file, as a download fills its spool.
func writeFile(t *testing.T, file string, content []byte) {
	t.Helper()
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReserveEvictsBeforeTheSpoolIsWritten: room for a download is made
// when it is reserved, before a byte of the spool is written; the
// reservation counts against maxsize until Adopt makes it the blob's.
func TestReserveEvictsBeforeTheSpoolIsWritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	clock := newFakeClock()
	e := newTestEnv(t, root, 10_000, 1, clock)
	var old []string
	for i := range 3 {
		old = append(old, e.mustPushLayer(blobContent(i, 3_000)))
		clock.Advance(1e9)
	}
	content := blobContent(9, 4_000)
	file := emptySpool(t, root)
	if err := e.d.Reserve(ctx, file, int64(len(content))); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	// The least recently used blob is gone from the disk already.
	if e.exists(old[0]) {
		t.Errorf("after Reserve the least recently used blob %s is still on disk", old[0])
	}
	if !e.exists(old[1]) || !e.exists(old[2]) {
		t.Error("Reserve evicted more than it needed")
	}
	if s, r := e.d.Stats(), e.d.Reserved(); s.Bytes+r > 10_000 || r != 4_000 {
		t.Errorf("cached %d + reserved %d: want reserved 4000 and at most 10000 in all", s.Bytes, r)
	}
	if got := e.metric("ecrproxy_cache_reserved_bytes"); got != 4_000 {
		t.Errorf("ecrproxy_cache_reserved_bytes = %v, want 4000", got)
	}
	// A write meanwhile (a manifest) does not take the reserved room: it
	// evicts instead.
	e.putManifest(blobContent(10, 2_000))
	if s, r := e.d.Stats(), e.d.Reserved(); s.Bytes+r > 10_000 {
		t.Errorf("after a write beside the reservation: cached %d + reserved %d > 10000", s.Bytes, r)
	}
	writeFile(t, file, content)
	if err := e.d.Adopt(ctx, "team/app", digest.FromBytes(content), file, int64(len(content))); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if s, r := e.d.Stats(), e.d.Reserved(); r != 0 || s.Bytes > 10_000 || !e.exists(dataPathOf(content)) {
		t.Errorf("after Adopt: cached %d, reserved %d, blob there %v; want reserved 0, the blob cached, at most 10000",
			s.Bytes, r, e.exists(dataPathOf(content)))
	}
	checkIndexMatchesDisk(t, e)
}

// TestReserveRefusals: a blob larger than maxsize, a bound taken by other
// reservations, and a filesystem without the free space are refused, and
// the refusal leaves nothing reserved.
func TestReserveRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	e := newTestEnv(t, root, 10_000, 0.9, newFakeClock())

	err := e.d.Reserve(ctx, emptySpool(t, root), 10_001)
	if !errors.Is(err, ErrBlobTooLarge) {
		t.Errorf("Reserve over maxsize: %v, want ErrBlobTooLarge", err)
	}
	cached := e.mustPushLayer(blobContent(1, 2_000))
	first := emptySpool(t, root)
	if err := e.d.Reserve(ctx, first, 6_000); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	second := emptySpool(t, root)
	if err := e.d.Reserve(ctx, second, 6_000); !errors.Is(err, ErrCacheFull) {
		t.Errorf("Reserve beyond the room other reservations leave: %v, want ErrCacheFull", err)
	}
	if !e.exists(cached) {
		t.Error("a reservation that could not be made evicted a blob all the same")
	}
	if r := e.d.Reserved(); r != 6_000 {
		t.Errorf("reserved after a refusal = %d, want 6000", r)
	}
	// Growing a reservation (a push whose size is learnt chunk by chunk).
	if err := e.d.Reserve(ctx, first, 8_000); err != nil {
		t.Errorf("growing a reservation: %v", err)
	}
	e.d.Unreserve(first)
	e.d.Unreserve(first) // twice is harmless
	if r := e.d.Reserved(); r != 0 {
		t.Errorf("reserved after Unreserve = %d, want 0", r)
	}

	// The filesystem: 5000 bytes free, counting what reserved files still
	// have to write.
	e.d.idx.freeSpace = func(string) (int64, error) { return 5_000, nil }
	a := emptySpool(t, root)
	if err := e.d.Reserve(ctx, a, 3_000); err != nil {
		t.Fatalf("Reserve within the free space: %v", err)
	}
	b := emptySpool(t, root)
	err = e.d.Reserve(ctx, b, 3_000)
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Reserve beyond the free space: %v, want ErrNoSpace matching ENOSPC", err)
	}
	if r := e.d.Reserved(); r != 3_000 {
		t.Errorf("reserved after a refusal = %d, want 3000", r)
	}
	// Once a's bytes are on disk they are no longer pending: the free
	// space reported (here unchanged) covers b.
	writeFile(t, a, blobContent(1, 3_000))
	if err := e.d.Reserve(ctx, b, 3_000); err != nil {
		t.Errorf("Reserve once the other reservation is written: %v", err)
	}
}

// TestReservationsNeverCrossTheBound: concurrent downloads reserve, write
// and adopt (or give up) while a watcher checks, under the index lock,
// that cached plus reserved bytes never exceed maxsize.
func TestReservationsNeverCrossTheBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	const maxSize = 20_000
	e := newTestEnv(t, root, maxSize, 0.9, newFakeClock())
	stop := make(chan struct{})
	var worst int64
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			e.d.idx.mu.Lock()
			worst = max(worst, e.d.idx.size+e.d.idx.reserved)
			e.d.idx.mu.Unlock()
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				content := blobContent(w*100+i, 1_000+(w*997+i*131)%6_000)
				file := emptySpool(t, root)
				if err := e.d.Reserve(ctx, file, int64(len(content))); err != nil {
					if !errors.Is(err, ErrCacheFull) {
						t.Errorf("Reserve: %v", err)
					}
					_ = os.Remove(file)
					continue
				}
				writeFile(t, file, content)
				if i%5 == 4 { // a download that failed
					e.d.Unreserve(file)
					_ = os.Remove(file)
					continue
				}
				if err := e.d.Adopt(ctx, fmt.Sprintf("team/app%d", w), digest.FromBytes(content), file, int64(len(content))); err != nil {
					t.Errorf("Adopt: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-watched
	if worst > maxSize {
		t.Errorf("cached + reserved reached %d, over maxsize %d", worst, maxSize)
	}
	if r := e.d.Reserved(); r != 0 {
		t.Errorf("reserved at the end = %d, want 0", r)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "spool", "*")); len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}
	checkIndexMatchesDisk(t, e)
}
