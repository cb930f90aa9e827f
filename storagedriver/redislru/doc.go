// Package redislru is a distribution storage middleware, registered by
// the command as "redislru", that keeps the blob data of any storage
// driver (the shared S3 bucket of several proxy replicas) under a size
// bound by deleting the least recently used blobs, with its index in
// Redis so that the bound holds for the whole cluster.
//
// # Configuration
//
//	redis:
//	  addrs: [redis:6379]
//	middleware:
//	  storage:
//	    - name: redislru
//	      options:
//	        maxsize: 500g       # bytes, or k/m/g/t (powers of 1024); required
//	        lowwater: 0.9       # evict down to this fraction of maxsize
//	        prefix: ecr-proxy   # Redis key prefix: one per shared cache
//	        touchinterval: 10s  # a replica records a blob's use at most this often
//	        evictgrace: 1m      # a blob used less than this ago is not evicted
//
// # The index
//
// Three keys under the prefix: a sorted set of blobs ("<alg>/<hex>") by
// last use (Unix milliseconds), a hash of their sizes, and the total of
// those sizes. Scripts keep the three consistent whatever the replicas
// do concurrently: a blob is counted once however many replicas store it.
//
// What counts is blob data, as in lrufilesystem: a blob enters the index
// when distribution moves an upload to …/blobs/<alg>/<xx>/<hex>/data or
// writes it with PutContent (manifests), and a Reader, GetContent or
// RedirectURL of its data is a use. A read of a blob the index lacks
// (Redis lost its data, or was down when the blob was written) indexes it
// from a Stat. A Stat, Reader or GetContent that finds the data missing
// (a garbage-collect or another replica deleted it) drops it from the
// index; a Delete through the driver does too, and [Driver.Reconcile]
// drops every entry whose data is gone (the command runs it after
// garbage-collect, which does not go through storage middleware).
//
// # Eviction
//
// A write of blob data first reserves its size in the total, atomically,
// if it fits under maxsize; so concurrent writers on any replicas never
// take the cache over the bound together. When it does not fit, the
// writer takes the eviction lease (a Redis key with a deadline, renewed
// per victim), so that one replica evicts at a time, and deletes the
// least recently used blobs through the wrapped driver until the total
// plus the new blob fits under lowwater×maxsize; a writer that finds the
// lease taken waits for it to go and tries again. A victim is taken out
// of the index only if nobody used it since it was chosen, and never if
// it was used within evictgrace (distribution stats a blob and opens it a
// moment later; a deletion in between would cut the response). Blobs in
// use are not otherwise pinned across the cluster: S3 finishes a GET
// already under way when its object is deleted. A blob that cannot get
// room (every blob used within evictgrace) is refused with
// [ErrCacheFull], one larger than maxsize with [ErrBlobTooLarge]; the
// proxy then serves it without caching it.
//
// Each reservation has a token and a deadline (a sorted set of tokens by
// deadline, and their sizes, in Redis), of ReserveTTL
// ([DefaultReserveTTL]), renewed at a third of it while the write goes
// on; the write's end turns it into the blob's size or gives it back.
// The reservation of a replica killed mid-write lapses: each writer drops
// the reservations past their deadline, atomically, before it computes
// the room, so the usable bound does not shrink with each crash.
// [Driver.Reconcile] drops every reservation (run it while no replica
// writes).
//
// An empty index (a new Redis, or one restarted without persistence) is
// rebuilt from the store by [Driver.Rebuild]: every blob with its size and
// its modification time as last use, by one replica (a lease). The
// command runs it at start. When Redis answers again after a failure, the
// driver walks the store the same way even if the index was kept: the
// blobs written while Redis was unreachable enter it, and count against
// the bound again.
//
// # Redis unavailable
//
// Reads and writes of blobs never wait for Redis: each Redis call has a
// short deadline, and after a failure the driver leaves Redis alone for
// [DefaultRetryInterval], serving and storing blobs without touching the
// index (no eviction, so the bound may be exceeded meanwhile). It logs
// the change once each way, and [Driver.Health] reports it for /readyz.
package redislru
