package redislru

import (
	"context"
	"fmt"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/redis/go-redis/v9"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// addScript indexes a blob found in the store unless the index has it:
// KEYS lru, sizes, total; ARGV blob, size, last use (ms).
var addScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('INCRBY', KEYS[3], ARGV[2])
return 1`)

// Rebuild indexes the blobs of the store that the index lacks, when the
// index was never built from the store (a new Redis, or one restarted
// without persistence; blobs written since are indexed already): each
// with its size, and its modification time as its last use. One replica
// does it (a lease); the others, and any later call, do nothing. Returns
// how many blobs it indexed.
func (d *Driver) Rebuild(ctx context.Context) (int, error) { return d.rebuild(ctx, false) }

// rebuild is Rebuild; with again, it walks the store even if the index
// was built from it before: after Redis was unreachable, it lacks the
// blobs written meanwhile, which it would otherwise count only once read.
func (d *Driver) rebuild(ctx context.Context, again bool) (int, error) {
	built := d.ix.key + ":built" // set once the index holds the store
	var exists int64
	if err := d.ix.do(ctx, func(ctx context.Context) error {
		var err error
		exists, err = d.ix.rdb.Exists(ctx, built).Result()
		return err
	}); err != nil || (exists == 1 && !again) {
		return 0, err
	}
	var won bool
	leaseKey := d.ix.key + ":rebuild"
	if err := d.ix.do(ctx, func(ctx context.Context) error {
		var err error
		won, err = d.ix.rdb.SetNX(ctx, leaseKey, "1", 10*d.p.LeaseTTL).Result()
		return err
	}); err != nil || !won {
		return 0, err
	}
	defer func() {
		_ = d.ix.do(ctx, func(ctx context.Context) error { return d.ix.rdb.Del(ctx, leaseKey).Err() })
	}()
	n := 0
	err := d.Walk(ctx, blobpath.Root, func(fi storagedriver.FileInfo) error {
		b, ok := blobpath.Data(fi.Path())
		if fi.IsDir() || !ok {
			return nil
		}
		var added int64
		err := d.ix.do(ctx, func(ctx context.Context) error {
			var err error
			added, err = addScript.Run(ctx, d.ix.rdb, []string{d.ix.lru, d.ix.sizes, d.ix.total}, b, fi.Size(), ms(fi.ModTime())).Int64()
			return err
		})
		if err != nil {
			return fmt.Errorf("index blob %s: %w", b, err)
		}
		n += int(added)
		return nil
	})
	if err != nil && !isNotFound(err) && !strings.Contains(err.Error(), "Path not found") {
		return n, fmt.Errorf("walk the store: %w", err)
	}
	// An empty store has an index too: a total of 0.
	_ = d.ix.do(ctx, func(ctx context.Context) error { return d.ix.rdb.SetNX(ctx, d.ix.total, 0, 0).Err() })
	_ = d.ix.do(ctx, func(ctx context.Context) error { return d.ix.rdb.Set(ctx, built, "1", 0).Err() })
	return n, nil
}
