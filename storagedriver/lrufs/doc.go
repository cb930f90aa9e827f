// Package lrufs is a distribution storage driver, registered as
// "lrufilesystem", that stores exactly like distribution's "filesystem"
// driver and keeps the blob data under a size bound by deleting the least
// recently used blobs. It is meant for a pull-through cache, where any
// deleted blob is fetched again from upstream on the next pull.
//
// # Configuration
//
//	storage:
//	  lrufilesystem:
//	    rootdirectory: /var/lib/registry  # default
//	    maxsize: 75g       # bytes, or k/m/g/t (powers of 1024); 0 or unset: unbounded
//	    lowwater: 0.9      # evict down to this fraction (or "90%") of maxsize
//	    maxthreads: 100    # as the filesystem driver
//
// Keep storage.cache.blobdescriptor off: a descriptor cache goes on
// describing evicted blobs, and distribution then serves them as empty bodies.
//
// # What is accounted
//
// Only blob data counts: every /docker/registry/v2/blobs/<alg>/<xx>/<hex>/data
// file (layers, configs and manifests). Links, uploads in progress and the
// scheduler state do not. A blob enters the index when distribution moves an
// upload into place (Move to …/data) or writes a manifest (PutContent of
// …/data); a Reader or GetContent of its data counts as a use, as does a
// write. Evicting a blob deletes its directory …/blobs/<alg>/<xx>/<hex>, as
// storage.Vacuum.RemoveBlob does; the repository links stay behind and
// distribution refetches the blob when a link leads to missing data.
//
// # When eviction runs
//
// Ahead of a write that would cross maxsize: Move and PutContent of blob data
// first evict, least recently used first, until the index plus the new blob
// fits under lowwater×maxsize, then write. A blob larger than maxsize on its
// own is refused with ErrBlobTooLarge (the proxy then serves it without
// caching it).
//
// Victims are chosen, and taken out of the index, under the index lock;
// their directories are deleted after it is released, so that reads and
// writes of other blobs never wait behind a multi-gigabyte deletion (the
// writer that needed the room waits for it). While a victim's deletion is
// in progress, a Reader, GetContent, Stat or OpenLinked of it finds it
// missing, and a write of it (the proxy fetching it again) waits until the
// deletion is over, so the deletion can neither remove the new data nor
// leave the index counting a blob that is not on disk.
//
// # Readers and writers in progress
//
// A Reader of blob data holds a reference on its blob until Close, as does a
// write to it; eviction skips referenced blobs, so a reader never sees a blob
// vanish or shrink. distribution's file reader reopens the file after a seek,
// so this matters beyond the first open. If busy blobs keep the cache over
// maxsize, eviction runs again when a reference is released.
//
// A Stat of blob data pins the blob for ten seconds: distribution's blob
// server stats a blob, sends the status line and Content-Length, and only
// then opens the Reader; a blob evicted in between would reach the client
// as a 200 with a cut body. A Stat does not otherwise count as a use (it
// neither moves the blob in the LRU order nor records a use on disk), so
// garbage-collect's Stats of every linked blob change nothing.
//
// # Integrity
//
// Each open of blob data (Stat, Reader, GetContent, OpenLinked) compares
// the file's size with the size the index recorded when the blob was
// stored: a cheap check (the Reader's fstat, no hashing) that catches a
// data file truncated, or rewritten at another length, behind the driver's
// back. Such a blob is dropped from the cache (its directory deleted, as
// eviction does, and the ecrproxy_cache_corrupt_blobs_total counter
// incremented) and reported missing, so distribution's proxy fetches it
// again. A write in progress, or one that ended since the open began, is
// not mistaken for corruption. The check cannot see changed bytes at the
// same length, or a file already damaged when the index was rebuilt at
// start: Driver.Verify, run by "registry verify", rehashes every blob and
// drops those that do not match their digest.
//
// # Blobs being written outside the driver
//
// A download or a push spools its blob to a file beside the cache before
// Adopt renames it into place. Reserve holds room for such a file under
// maxsize, evicting ahead exactly as a write would, before the caller
// writes it: cached blobs plus reserved room never exceed maxsize (blobs
// in use, which eviction skips, aside). Adopt turns the reservation into
// the blob's place in the index; Unreserve releases it. Reserve refuses a
// blob larger than maxsize (ErrBlobTooLarge), room that blobs in use and
// other reservations hold (ErrCacheFull), and room the filesystem does
// not have free (ErrNoSpace, which matches syscall.ENOSPC; counted is what
// each reserved file has still to write): the caller then streams the
// blob without caching it.
//
// # Disk full
//
// distribution's proxy streams a miss to the client and into an upload
// through io.MultiWriter, which stops at the first write error. So writers of
// uploads (…/_uploads/<uuid>/data) swallow write errors such as ENOSPC: they
// remember the first, report the data as written, and fail Commit with it.
// The client gets all its bytes and the blob is not cached. Those uploads
// are not reserved; ecr-proxy's own downloads and pushes go through them
// only when their spool is on another filesystem than the cache (Adopt
// cannot rename), and then after releasing their reservation.
//
// # Restart, and why there is no journal
//
// The last use of a blob is recorded as its data file's modification time
// (os.Chtimes), at most once per TouchInterval (one minute) per blob so that
// hot reads cost no syscall. New rebuilds the index by reading the blob
// directories with os.ReadDir and stat'ing each data file: about 1.4 s
// for 100,000 blobs on a warm page cache. A journal file inside rootdirectory would break
// distribution's driver conformance suite (List("/") must be empty after
// every test) and could go stale under an external garbage-collect; file
// times cannot. New deletes nothing, even over the bound (maxsize lowered
// since): the first write evicts, so a driver opened only to read, such as
// garbage-collect --dry-run's, leaves the cache as it is. A use less than
// TouchInterval after the recorded one is not persisted: after a restart
// the order is right to within that interval.
//
// # Garbage collection and other processes
//
// Delete through the driver (garbage-collect, the TTL scheduler, the upload
// purger) drops the blobs under the path from the index. A blob's
// directory, what they delete, is one map lookup; only a directory above
// the blobs (an algorithm or prefix directory, or an ancestor of the blobs
// root) costs a pass over the index. garbage-collect runs
// in its own process with its own Driver instance; the serving process notices
// blobs deleted behind its back lazily: a Stat, Reader or GetContent of blob
// data that finds the file missing drops it from the index, and a blob found
// on disk but not in the index is indexed at its first read. A restart
// rebuilds the exact state.
//
// # Metrics
//
// A Driver registers its metrics with Parameters.Registerer (through
// distribution's factory: the RegistererParameter storage parameter, which
// UseRegisterer sets), and with nothing when none is given; it never uses
// prometheus.DefaultRegisterer on its own. ecrproxy_cache_size_bytes,
// ecrproxy_cache_reserved_bytes and ecrproxy_cache_blobs are gauges of
// the Driver's index;
// ecrproxy_cache_evictions_total, ecrproxy_cache_evicted_bytes_total,
// ecrproxy_cache_blob_reads_total and ecrproxy_cache_corrupt_blobs_total
// are counters, shared by the Drivers registered with one registry (the
// gauges then report the first of them).
package lrufs
