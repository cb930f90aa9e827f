package redislru_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/redislru"
)

// clock is a test clock that moves one millisecond per reading, so that
// every recorded use is ordered, plus what the test adds.
type clock struct{ ms atomic.Int64 }

func (c *clock) Now() time.Time      { return time.UnixMilli(1_700_000_000_000 + c.ms.Add(1)) }
func (c *clock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func newClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// blobPath is the data path of content in distribution's layout.
func blobPath(content []byte) string {
	sum := sha256.Sum256(content)
	h := hex.EncodeToString(sum[:])
	return fmt.Sprintf("/docker/registry/v2/blobs/sha256/%s/%s/data", h[:2], h)
}

func blob(i, size int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, size)
	copy(b, fmt.Sprintf("blob %d", i))
	return b
}

func TestDriverSuite(t *testing.T) {
	srv := enginetest.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	n := 0
	// Over distribution's filesystem driver, not its inmemory one: the
	// suite's TestDeleteOnlyDeletesSubpaths fails about once in 30 runs
	// on a bare inmemory driver (its Delete reports a path it was just
	// given as not found), which is no fault of the wrapper's.
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) {
		n++
		inner, err := filesystem.FromParameters(map[string]any{"rootdirectory": t.TempDir()})
		if err != nil {
			return nil, err
		}
		return redislru.New(inner, rdb, redislru.Parameters{MaxSize: 1 << 40, Prefix: fmt.Sprintf("suite-%d", n)})
	}, false)
}

// replicas are drivers of one shared store and one Redis, as the
// replicas of a cluster have.
func replicas(t *testing.T, rdb redis.UniversalClient, n int, p redislru.Parameters) (storagedriver.StorageDriver, []*redislru.Driver) {
	t.Helper()
	store := inmemory.New()
	out := make([]*redislru.Driver, n)
	for i := range out {
		d, err := redislru.New(store, rdb, p)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = d
	}
	return store, out
}

// storedSize is the bytes of blob data in store.
func storedSize(t *testing.T, store storagedriver.StorageDriver) int64 {
	t.Helper()
	var total int64
	err := store.Walk(t.Context(), "/docker/registry/v2/blobs", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && strings.HasSuffix(fi.Path(), "/data") {
			total += fi.Size()
		}
		return nil
	})
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		t.Fatal(err)
	}
	return total
}

// TestBoundHoldsAcrossReplicas: three replicas write in turn; the shared
// store never holds more than maxsize, and the blobs that any replica
// used recently survive while the least recently used go.
func TestBoundHoldsAcrossReplicas(t *testing.T) {
	srv := enginetest.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	var clk clock
	const size, maxsize = 1000, 10_000
	store, rs := replicas(t, rdb, 3, redislru.Parameters{MaxSize: maxsize, LowWater: 0.8, Now: clk.Now, TouchInterval: -1, EvictGrace: -1})
	ctx := t.Context()

	for i := range 8 {
		if err := rs[i%3].PutContent(ctx, blobPath(blob(i, size)), blob(i, size)); err != nil {
			t.Fatalf("put blob %d: %v", i, err)
		}
	}
	// Blobs 0, 1 and 2 are used again, each through another replica than
	// wrote it, one with a Reader.
	for i, r := range []*redislru.Driver{rs[1], rs[2]} {
		if _, err := r.GetContent(ctx, blobPath(blob(i, size))); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := rs[0].Reader(ctx, blobPath(blob(2, size)), 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Close()
	for i := 8; i < 14; i++ {
		if err := rs[i%3].PutContent(ctx, blobPath(blob(i, size)), blob(i, size)); err != nil {
			t.Fatalf("put blob %d: %v", i, err)
		}
		if got := storedSize(t, store); got > maxsize {
			t.Fatalf("after blob %d: %d bytes stored, over maxsize %d", i, got, maxsize)
		}
	}
	var kept []int
	for i := range 14 {
		if _, err := store.Stat(ctx, blobPath(blob(i, size))); err == nil {
			kept = append(kept, i)
		}
	}
	// Last use, oldest first: 3..7, 0, 1, 2, then 8.. as written. Writing
	// blob 10 evicts 3, 4, 5 (to 7000 bytes, room for it under 8000);
	// writing 13 evicts 6, 7 and then 0, the oldest use after them.
	want := []int{1, 2, 8, 9, 10, 11, 12, 13}
	if diff := cmp.Diff(want, kept); diff != "" {
		t.Errorf("blobs kept (-want +got):\n%s", diff)
	}
}

// TestTooLarge: a blob over maxsize is refused and not stored.
func TestTooLarge(t *testing.T) {
	srv := enginetest.StartRedis(t)
	store, rs := replicas(t, newClient(t, srv.Addr()), 1, redislru.Parameters{MaxSize: 100})
	err := rs[0].PutContent(t.Context(), blobPath(blob(1, 101)), blob(1, 101))
	if err == nil || !strings.Contains(err.Error(), redislru.ErrBlobTooLarge.Error()) {
		t.Errorf("put 101 bytes under maxsize 100: %v, want ErrBlobTooLarge", err)
	}
	if got := storedSize(t, store); got != 0 {
		t.Errorf("%d bytes stored, want 0", got)
	}
}

// TestReconcileAfterOutsideDelete: a blob deleted behind the driver's
// back (garbage-collect) leaves the index at Reconcile, and a read of a
// blob the index lacks indexes it.
func TestReconcileAfterOutsideDelete(t *testing.T) {
	srv := enginetest.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	store, rs := replicas(t, rdb, 1, redislru.Parameters{MaxSize: 1 << 20, Prefix: "rec"})
	ctx := t.Context()
	for i := range 3 {
		if err := rs[0].PutContent(ctx, blobPath(blob(i, 100)), blob(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Delete(ctx, strings.TrimSuffix(blobPath(blob(1, 100)), "/data")); err != nil {
		t.Fatal(err)
	}
	n, err := rs[0].Reconcile(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Reconcile = %d, %v; want 1 blob dropped", n, err)
	}
	if got := rdb.Get(ctx, "{rec}:total").Val(); got != "200" {
		t.Errorf("total after reconcile = %s, want 200", got)
	}
	// Blob 3 written behind the driver's back is indexed at its first read.
	if err := store.PutContent(ctx, blobPath(blob(3, 50)), blob(3, 50)); err != nil {
		t.Fatal(err)
	}
	rc, err := rs[0].Reader(ctx, blobPath(blob(3, 50)), 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Close()
	if got := rdb.Get(ctx, "{rec}:total").Val(); got != "250" {
		t.Errorf("total after reading an unindexed blob = %s, want 250", got)
	}
}

// logLines collects log messages.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

func (l *logLines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// TestRedisDown: with Redis gone, reads and writes go on, Health says
// why, the loss is logged once; when Redis is back, so is the index.
func TestRedisDown(t *testing.T) {
	srv := enginetest.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	var clk clock
	logs := &logLines{}
	logger := logrus.New()
	logger.Out = logs
	_, rs := replicas(t, rdb, 1, redislru.Parameters{MaxSize: 1 << 20, Now: clk.Now, Logger: logger, TouchInterval: -1})
	d, ctx := rs[0], t.Context()
	if err := d.PutContent(ctx, blobPath(blob(0, 10)), blob(0, 10)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := 1; i < 4; i++ {
		if err := d.PutContent(ctx, blobPath(blob(i, 10)), blob(i, 10)); err != nil {
			t.Fatalf("put with redis down: %v", err)
		}
		got, err := d.GetContent(ctx, blobPath(blob(0, 10)))
		if err != nil || !bytes.Equal(got, blob(0, 10)) {
			t.Fatalf("get with redis down: %v", err)
		}
		clk.Add(redislru.DefaultRetryInterval) // each round tries Redis again
	}
	if d.Health() == nil {
		t.Error("Health is nil with redis down")
	}
	if n := logs.count("redis unavailable"); n != 1 {
		t.Errorf("redis loss logged %d times, want once", n)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(redislru.DefaultRetryInterval)
	if err := d.PutContent(ctx, blobPath(blob(9, 10)), blob(9, 10)); err != nil {
		t.Fatal(err)
	}
	if err := d.Health(); err != nil {
		t.Errorf("Health after redis is back: %v", err)
	}
	if n := logs.count("redis answers again"); n != 1 {
		t.Errorf("redis back logged %d times, want once", n)
	}
	// Redis came back empty: the driver rebuilds the index from the
	// store, in the background: the five blobs, 10 bytes each.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) && rdb.Exists(ctx, "{ecr-proxy}:evict-lease:built").Val() == 0 {
		<-tick.C
	}
	if got := rdb.Get(ctx, "{ecr-proxy}:total").Val(); got != "50" {
		t.Errorf("total after redis came back empty = %s, want 50 (every blob in the store, rebuilt)", got)
	}
}

// TestRebuild: an emptied Redis is refilled from the store, once, with
// sizes and modification times; the bound then holds again.
func TestRebuild(t *testing.T) {
	srv := enginetest.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	store, rs := replicas(t, rdb, 2, redislru.Parameters{MaxSize: 1 << 20, Prefix: "reb"})
	ctx := t.Context()
	for i := range 3 {
		if err := rs[0].PutContent(ctx, blobPath(blob(i, 100)), blob(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := rs[1].Rebuild(ctx); err != nil || n != 0 {
		t.Errorf("Rebuild of an index that has every blob = %d, %v; want none added", n, err)
	}
	if n, err := rs[1].Rebuild(ctx); err != nil || n != 0 {
		t.Errorf("Rebuild of a built index = %d, %v; want nothing done", n, err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil { // Redis restarted empty
		t.Fatal(err)
	}
	if err := rs[0].PutContent(ctx, blobPath(blob(7, 100)), blob(7, 100)); err != nil { // written before the rebuild
		t.Fatal(err)
	}
	if n, err := rs[1].Rebuild(ctx); err != nil || n != 3 {
		t.Fatalf("Rebuild = %d, %v; want the 3 blobs the index lacked indexed", n, err)
	}
	if got := rdb.Get(ctx, "{reb}:total").Val(); got != "400" {
		t.Errorf("total after rebuild = %s, want 400", got)
	}
	if n, err := rs[0].Rebuild(ctx); err != nil || n != 0 {
		t.Errorf("second Rebuild = %d, %v; want nothing done", n, err)
	}
	_ = store
}

// TestRedisBackWithItsData: Redis stops answering for a while but keeps
// its data (paused, as a partition looks); a blob written meanwhile is
// stored unindexed, and enters the index once Redis answers again,
// without being read, so that the bound counts it.
func TestRedisBackWithItsData(t *testing.T) {
	srv := enginetest.StartRedis(t)
	// The command's client: the calls' deadlines bound them.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	_, rs := replicas(t, rdb, 1, redislru.Parameters{MaxSize: 1 << 20, Prefix: "back",
		OpTimeout: 100 * time.Millisecond, RetryInterval: 50 * time.Millisecond})
	d, ctx := rs[0], t.Context()
	if _, err := d.Rebuild(ctx); err != nil { // the index holds the store, as after a start
		t.Fatal(err)
	}
	if err := d.PutContent(ctx, blobPath(blob(0, 10)), blob(0, 10)); err != nil {
		t.Fatal(err)
	}
	admin := newClient(t, srv.Addr())
	if err := admin.Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	if err := d.PutContent(ctx, blobPath(blob(1, 20)), blob(1, 20)); err != nil {
		t.Fatalf("put while Redis does not answer: %v", err)
	}
	if d.Health() == nil {
		t.Fatal("Health is nil while Redis does not answer: the write did not meet the pause")
	}
	sum := sha256.Sum256(blob(1, 20))
	member := "sha256/" + hex.EncodeToString(sum[:])
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !rdb.HExists(ctx, "{back}:sizes", member).Val() {
		if time.Now().After(deadline) {
			t.Fatalf("the blob written while Redis did not answer never entered the index (health %v)", d.Health())
		}
		_, _ = d.Size(ctx) // a call to Redis, which notices its return
		<-tick.C
	}
	if got := rdb.Get(ctx, "{back}:total").Val(); got != "30" {
		t.Errorf("total = %s once Redis answers again, want 30: both blobs", got)
	}
}
