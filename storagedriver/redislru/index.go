package redislru

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// errSkipped is returned while Redis is left alone after a failure.
var errSkipped = errors.New("redis unavailable: skipped")

// The scripts keep the sorted set, the sizes and the total consistent.
var (
	// record: KEYS lru, sizes, total, reservations, reserved sizes; ARGV
	// blob, size, now (ms), and the token of the writer's reservation
	// ('' for none): a reservation still held becomes the blob's size.
	recordScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[2], ARGV[1])
local delta = tonumber(ARGV[2])
if old then delta = delta - tonumber(old) end
if ARGV[4] ~= '' then
  local r = redis.call('HGET', KEYS[5], ARGV[4])
  if r then
    delta = delta - tonumber(r)
    redis.call('HDEL', KEYS[5], ARGV[4])
    redis.call('ZREM', KEYS[4], ARGV[4])
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return redis.call('INCRBY', KEYS[3], delta)`)
	// reserve: KEYS total, reservations (token by deadline), reserved
	// sizes (by token); ARGV size, maxsize, token, deadline (ms), now
	// (ms). Drops the reservations past their deadline (their writers
	// died), then adds size to the total under the token if it fits
	// under maxsize: 1 if it did, else 0.
	reserveScript = redis.NewScript(`
for _, tok in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])) do
  local r = redis.call('HGET', KEYS[3], tok)
  if r then redis.call('DECRBY', KEYS[1], r) end
  redis.call('HDEL', KEYS[3], tok)
  redis.call('ZREM', KEYS[2], tok)
end
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
if total + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return 1`)
	// extend: KEYS reservations; ARGV token, deadline (ms). 1 if the
	// reservation is still held.
	extendScript = redis.NewScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0`)
	// unreserve: KEYS total, reservations, reserved sizes; ARGV token.
	// Gives the reservation back if it is still held.
	unreserveScript = redis.NewScript(`
local r = redis.call('HGET', KEYS[3], ARGV[1])
if not r then return 0 end
redis.call('DECRBY', KEYS[1], r)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`)
	// recount: KEYS sizes, total, reservations, reserved sizes. Sets
	// the total to the sum of the sizes, dropping every reservation.
	recountScript = redis.NewScript(`
local sum = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do sum = sum + tonumber(v) end
redis.call('SET', KEYS[2], sum)
redis.call('DEL', KEYS[3], KEYS[4])
return sum`)
	// forget: KEYS lru, sizes, total; ARGV blob, and the latest last use
	// allowed ('' for any). Returns the size forgotten, or -1 when the
	// blob was used after that.
	forgetScript = redis.NewScript(`
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and score and tonumber(score) > tonumber(ARGV[2]) then return -1 end
local size = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if size then
  redis.call('DECRBY', KEYS[3], size)
  return tonumber(size)
end
return 0`)
	// touch: KEYS lru; ARGV blob, now (ms). 1 if the blob is indexed.
	touchScript = redis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1`)
	// renew and release: KEYS lease; ARGV token (and ttl in ms).
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// index is the shared LRU index in Redis, and this replica's view of
// whether Redis answers.
type index struct {
	rdb                    redis.UniversalClient
	p                      Parameters
	lru, sizes, total, key string // key: the eviction lease
	reservations, reserved string // writers' reservations: token by deadline, size by token

	mu      sync.Mutex
	touched map[string]time.Time // last use recorded by this replica
}

func newIndex(rdb redis.UniversalClient, p Parameters) *index {
	tag := "{" + p.Prefix + "}" // one hash slot: the scripts touch all keys
	return &index{rdb: rdb, p: p, lru: tag + ":lru", sizes: tag + ":sizes", total: tag + ":total", key: tag + ":evict-lease",
		reservations: tag + ":reservations", reserved: tag + ":reserved", touched: map[string]time.Time{}}
}

// do runs fn against Redis with the call deadline, unless Redis failed
// less than RetryInterval ago, and records whether Redis answers.
func (ix *index) do(ctx context.Context, fn func(ctx context.Context) error) error {
	if ix.p.State.Skip() {
		return errSkipped
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ix.p.OpTimeout)
	defer cancel()
	err := fn(ctx)
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	ix.p.State.Note(err)
	return err
}

// health is nil while Redis answers, else why not.
func (ix *index) health() error { return ix.p.State.Health() }

// ms is t in Unix milliseconds, the sorted set's score.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// record indexes blob b with its size as used now, turning the
// reservation token (if not "" and still held) into its size; returns
// the new total.
func (ix *index) record(ctx context.Context, b string, size int64, token string) (int64, error) {
	var total int64
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		keys := []string{ix.lru, ix.sizes, ix.total, ix.reservations, ix.reserved}
		total, err = recordScript.Run(ctx, ix.rdb, keys, b, size, ms(ix.p.Now()), token).Int64()
		return err
	})
	if err == nil {
		ix.noteTouch(b)
	}
	return total, err
}

// touch records a use of b, at most once per TouchInterval from this
// replica; indexed is false when the index does not have b.
func (ix *index) touch(ctx context.Context, b string) (indexed bool, err error) {
	if !ix.dueTouch(b) {
		return true, nil
	}
	var found int64
	err = ix.do(ctx, func(ctx context.Context) error {
		var err error
		found, err = touchScript.Run(ctx, ix.rdb, []string{ix.lru}, b, ms(ix.p.Now())).Int64()
		return err
	})
	if err != nil {
		return true, err
	}
	if found == 0 {
		return false, nil
	}
	ix.noteTouch(b)
	return true, nil
}

// dueTouch says whether this replica should record a use of b now.
func (ix *index) dueTouch(b string) bool {
	if ix.p.TouchInterval < 0 {
		return true
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	last, ok := ix.touched[b]
	return !ok || ix.p.Now().Sub(last) >= ix.p.TouchInterval
}

// noteTouch remembers that b's use was recorded now, and forgets uses
// older than the interval once the map grows.
func (ix *index) noteTouch(b string) {
	if ix.p.TouchInterval < 0 {
		return
	}
	now := ix.p.Now()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.touched[b] = now
	if len(ix.touched) > 100_000 {
		for k, t := range ix.touched {
			if now.Sub(t) >= ix.p.TouchInterval {
				delete(ix.touched, k)
			}
		}
	}
}

// forget drops b from the index; with usedBefore non-zero only if its
// last use is not later. Returns the size forgotten, or -1 if it was used
// since.
func (ix *index) forget(ctx context.Context, b string, usedBefore time.Time) (int64, error) {
	limit := ""
	if !usedBefore.IsZero() {
		limit = ms(usedBefore)
	}
	var n int64
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = forgetScript.Run(ctx, ix.rdb, []string{ix.lru, ix.sizes, ix.total}, b, limit).Int64()
		return err
	})
	ix.mu.Lock()
	delete(ix.touched, b)
	ix.mu.Unlock()
	return n, err
}

// newToken is a random reservation or lease token.
func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// reserve adds size to the total, under a new reservation token that
// lapses after ReserveTTL unless extended, if it stays under maxsize;
// reservations past their deadline are dropped first. Returns the token,
// "" when size does not fit.
func (ix *index) reserve(ctx context.Context, size int64) (string, error) {
	token, now := newToken(), ix.p.Now()
	var ok int64
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		keys := []string{ix.total, ix.reservations, ix.reserved}
		ok, err = reserveScript.Run(ctx, ix.rdb, keys, size, ix.p.MaxSize, token, ms(now.Add(ix.p.ReserveTTL)), ms(now)).Int64()
		return err
	})
	if ok != 1 {
		token = ""
	}
	return token, err
}

// extend moves the deadline of the reservation token a ReserveTTL ahead.
func (ix *index) extend(ctx context.Context, token string) {
	_ = ix.do(ctx, func(ctx context.Context) error {
		return extendScript.Run(ctx, ix.rdb, []string{ix.reservations}, token, ms(ix.p.Now().Add(ix.p.ReserveTTL))).Err()
	})
}

// unreserve gives back a reservation whose write failed.
func (ix *index) unreserve(ctx context.Context, token string) {
	_ = ix.do(ctx, func(ctx context.Context) error {
		return unreserveScript.Run(ctx, ix.rdb, []string{ix.total, ix.reservations, ix.reserved}, token).Err()
	})
}

// recount sets the total to the sum of the indexed sizes, dropping the
// reservations.
func (ix *index) recount(ctx context.Context) error {
	return ix.do(ctx, func(ctx context.Context) error {
		return recountScript.Run(ctx, ix.rdb, []string{ix.sizes, ix.total, ix.reservations, ix.reserved}).Err()
	})
}

// leaseHeld reports whether some replica holds the eviction lease.
func (ix *index) leaseHeld(ctx context.Context) bool {
	var n int64
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = ix.rdb.Exists(ctx, ix.key).Result()
		return err
	})
	return err == nil && n == 1
}

// totalSize is the bytes the index counts.
func (ix *index) totalSize(ctx context.Context) (int64, error) {
	var n int64
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = ix.rdb.Get(ctx, ix.total).Int64()
		return err
	})
	return n, err
}

// oldest returns up to n blobs last used before t, least recent first.
func (ix *index) oldest(ctx context.Context, t time.Time, n int64) ([]string, error) {
	var out []string
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		out, err = ix.rdb.ZRangeByScore(ctx, ix.lru, &redis.ZRangeBy{Min: "-inf", Max: ms(t), Count: n}).Result()
		return err
	})
	return out, err
}

// members calls fn for every blob in the index.
func (ix *index) members(ctx context.Context, fn func(b string) error) error {
	var cursor uint64
	for {
		var keys []string
		err := ix.do(ctx, func(ctx context.Context) error {
			var err error
			keys, cursor, err = ix.rdb.ZScan(ctx, ix.lru, cursor, "", 512).Result()
			return err
		})
		if err != nil {
			return err
		}
		for i := 0; i < len(keys); i += 2 { // member, score
			if err := fn(keys[i]); err != nil {
				return err
			}
		}
		if cursor == 0 {
			return nil
		}
	}
}

// lease is the eviction lease while this replica holds it.
type lease struct {
	ix    *index
	token string
}

// acquire takes the eviction lease, or returns nil when another replica
// holds it.
func (ix *index) acquire(ctx context.Context) (*lease, error) {
	token := newToken()
	var ok bool
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		ok, err = ix.rdb.SetNX(ctx, ix.key, token, ix.p.LeaseTTL).Result()
		return err
	})
	if err != nil || !ok {
		return nil, err
	}
	return &lease{ix: ix, token: token}, nil
}

// renew extends the lease; false when it was lost (lapsed and taken).
func (l *lease) renew(ctx context.Context) bool {
	var n int64
	err := l.ix.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = renewScript.Run(ctx, l.ix.rdb, []string{l.ix.key}, l.token, l.ix.p.LeaseTTL.Milliseconds()).Int64()
		return err
	})
	return err == nil && n == 1
}

// release gives the lease up if this replica still holds it.
func (l *lease) release(ctx context.Context) {
	_ = l.ix.do(ctx, func(ctx context.Context) error {
		return releaseScript.Run(ctx, l.ix.rdb, []string{l.ix.key}, l.token).Err()
	})
}
