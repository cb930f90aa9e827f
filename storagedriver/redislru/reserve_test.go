package redislru_test

import (
	"context"
	"errors"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/redis/go-redis/v9"

	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/redislru"
)

// stalledMove is a store whose Move into place waits until release is
// closed, having told entered: a write in progress.
type stalledMove struct {
	storagedriver.StorageDriver
	entered, release chan struct{}
}

func (s *stalledMove) Move(ctx context.Context, src, dst string) error {
	close(s.entered)
	<-s.release
	return s.StorageDriver.Move(ctx, src, dst)
}

// writing starts a replica's Move of a 600-byte upload into place over
// store, stalled once its room is reserved; the returned channel gets
// the Move's result once release is closed.
func writing(t *testing.T, store storagedriver.StorageDriver, rdb redis.UniversalClient, p redislru.Parameters) (release chan struct{}, result chan error) {
	t.Helper()
	s := &stalledMove{StorageDriver: store, entered: make(chan struct{}), release: make(chan struct{})}
	a, err := redislru.New(s, rdb, p)
	if err != nil {
		t.Fatal(err)
	}
	const upload = "/docker/registry/v2/repositories/team/app/_uploads/u1/data"
	if err := store.PutContent(t.Context(), upload, blob(1, 600)); err != nil {
		t.Fatal(err)
	}
	result = make(chan error, 1)
	go func() { result <- a.Move(context.Background(), upload, blobPath(blob(1, 600))) }()
	select {
	case <-s.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the write never started")
	}
	return s.release, result
}

// TestReservationOfKilledWriterLapses: a replica killed while it writes
// a blob (its reservation neither committed nor given back) holds the
// room it reserved only until the reservation's deadline; then the next
// write drops it, and the bound is whole again without a Reconcile.
func TestReservationOfKilledWriterLapses(t *testing.T) {
	srv := enginetest.StartRedis(t)
	var clk clock
	p := redislru.Parameters{MaxSize: 1000, Now: clk.Now, TouchInterval: -1, EvictGrace: -1, ReserveTTL: time.Minute}
	store := inmemory.New()
	rdbA := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	release, result := writing(t, store, rdbA, p)
	t.Cleanup(func() {
		close(release)
		if err := <-result; err != nil { // its index update fails unseen: its Redis is gone
			t.Logf("the killed writer's move: %v", err)
		}
	})
	b, err := redislru.New(store, newClient(t, srv.Addr()), p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if n, err := b.Size(ctx); err != nil || n != 600 {
		t.Fatalf("size with a write in progress: %d, %v; want its 600 bytes reserved", n, err)
	}
	if err := b.PutContent(ctx, blobPath(blob(2, 600)), blob(2, 600)); !errors.Is(err, redislru.ErrCacheFull) {
		t.Fatalf("a second write while the first holds its room: %v, want ErrCacheFull", err)
	}

	_ = rdbA.Close() // the writing replica is killed: it renews nothing more
	clk.Add(30 * time.Second)
	if err := b.PutContent(ctx, blobPath(blob(2, 600)), blob(2, 600)); !errors.Is(err, redislru.ErrCacheFull) {
		t.Fatalf("a write before the killed writer's reservation lapsed: %v, want ErrCacheFull", err)
	}
	clk.Add(31 * time.Second) // past the reservation's deadline
	if err := b.PutContent(ctx, blobPath(blob(2, 600)), blob(2, 600)); err != nil {
		t.Fatalf("a write after the killed writer's reservation lapsed: %v", err)
	}
	if n, err := b.Size(ctx); err != nil || n != 600 {
		t.Errorf("size: %d, %v; want 600, the new blob's alone", n, err)
	}
}

// TestReservationRenewedWhileWriting: a write that lasts several of its
// reservation's deadlines keeps its room (renewed while it goes on), and
// once it ends the reservation becomes the blob's size, counted once.
func TestReservationRenewedWhileWriting(t *testing.T) {
	srv := enginetest.StartRedis(t)
	const ttl = 300 * time.Millisecond
	p := redislru.Parameters{MaxSize: 1000, TouchInterval: -1, EvictGrace: -1, ReserveTTL: ttl}
	store := inmemory.New()
	release, result := writing(t, store, newClient(t, srv.Addr()), p)
	b, err := redislru.New(store, newClient(t, srv.Addr()), p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(4 * ttl); time.Now().Before(end); <-tick.C {
		if err := b.PutContent(ctx, blobPath(blob(2, 600)), blob(2, 600)); !errors.Is(err, redislru.ErrCacheFull) {
			close(release)
			t.Fatalf("a second write while the first goes on: %v, want ErrCacheFull (the first's room kept)", err)
		}
	}
	close(release)
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if n, err := b.Size(ctx); err != nil || n != 600 {
		t.Errorf("size after the write: %d, %v; want 600", n, err)
	}
}
