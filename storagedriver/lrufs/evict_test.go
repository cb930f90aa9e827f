package lrufs

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"
)

// TestEvictionDeletesOutsideTheLock holds the deletion of an evicted blob
// (as a multi-gigabyte directory would take its time) and checks that the
// cache goes on meanwhile: a read of another blob completes, the victim is
// already missing for readers and Stat, and a writer of the victim's
// content is neither lost nor resurrected by the deletion. Before, the
// deletion ran under the index lock and every read waited behind it.
func TestEvictionDeletesOutsideTheLock(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 200, 1, newFakeClock())
	aContent, bContent := blobContent(1, 100), blobContent(2, 100)
	a := e.mustPushLayer(aContent)
	e.clock.Advance(time.Second)
	b := e.mustPushLayer(bContent)
	e.clock.Advance(time.Second)

	deleting, unblock := make(chan struct{}), make(chan struct{})
	e.inner.setOnDelete(func(p string) {
		if p == filepath.Dir(a) {
			close(deleting)
			<-unblock
		}
	})
	pushed := make(chan error, 2)
	go func() { _, err := e.pushLayer(blobContent(3, 100)); pushed <- err }() // evicts a
	<-deleting

	done := make(chan []byte)
	go func() { done <- e.read(b) }()
	select {
	case got := <-done:
		if !bytes.Equal(got, bContent) {
			t.Errorf("read of b during the eviction of a: %d bytes, want %d", len(got), len(bContent))
		}
	case <-time.After(10 * time.Second):
		close(unblock)
		t.Fatal("a read of another blob waited for an eviction's deletion")
	}
	if _, err := e.d.Reader(ctx, a, 0); !isNotFound(err) {
		t.Errorf("Reader of the blob being evicted = %v, want PathNotFoundError", err)
	}
	if _, err := e.d.Stat(ctx, a); !isNotFound(err) {
		t.Errorf("Stat of the blob being evicted = %v, want PathNotFoundError", err)
	}
	if _, err := e.d.GetContent(ctx, a); !isNotFound(err) {
		t.Errorf("GetContent of the blob being evicted = %v, want PathNotFoundError", err)
	}
	go func() { _, err := e.pushLayer(aContent); pushed <- err }() // fetched again
	close(unblock)
	for range 2 {
		if err := <-pushed; err != nil {
			t.Fatal(err)
		}
	}
	e.inner.setOnDelete(nil)
	checkIndexMatchesDisk(t, e)
	if st := e.d.Stats(); st.Bytes > 200 {
		t.Errorf("Stats() = %+v over the bound", st)
	}
}

// TestStatPinsTheBlobUntilItsReader plays distribution's blob server: a
// Stat of the least recently used blob, then (after the response headers)
// its Reader, while another writer forces an eviction in between. The blob
// must be read in full. Before, a Stat was not a use and the blob was
// evicted: a 200 with a cut body.
func TestStatPinsTheBlobUntilItsReader(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 200, 1, newFakeClock())
	tailContent := blobContent(1, 100)
	tail := e.mustPushLayer(tailContent)
	e.clock.Advance(time.Second)
	other := e.mustPushLayer(blobContent(2, 100))
	e.clock.Advance(time.Second)

	fi, err := e.d.Stat(ctx, tail)
	if err != nil {
		t.Fatal(err)
	}
	e.mustPushLayer(blobContent(3, 100)) // one blob must go
	rc, err := e.d.Reader(ctx, tail, 0)
	if err != nil {
		t.Fatalf("Reader after Stat, with an eviction in between: %v", err)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || int64(len(got)) != fi.Size() || !bytes.Equal(got, tailContent) {
		t.Fatalf("read %d bytes (%v) after a Stat of %d", len(got), err, fi.Size())
	}
	if e.exists(other) {
		t.Error("the unpinned blob was not evicted instead")
	}

	// The pin is short: once it is over, a Stat'ed blob is evicted as any.
	last := e.mustPushLayer(blobContent(4, 100)) // evicts the blob written third
	if _, err := e.d.Stat(ctx, last); err != nil {
		t.Fatal(err)
	}
	e.read(tail) // tail is now more recent than last
	e.clock.Advance(statPin + time.Second)
	e.mustPushLayer(blobContent(5, 100))
	if e.exists(last) || !e.exists(tail) {
		t.Errorf("after the pin: last exists %v, tail exists %v; want false, true", e.exists(last), e.exists(tail))
	}
	checkIndexMatchesDisk(t, e)
}
