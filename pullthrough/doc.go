// Package pullthrough fixes, from outside, how distribution's proxy pulls
// blobs and tags from ECR. [Puller.InitRepository] is a distribution
// repository middleware that wraps each proxied repository's blob store
// and tag service; [Puller.InitRegistry] takes the local namespace (the
// cache the proxy reads first) from the registry middleware the command
// installs.
//
// Blobs. distribution's proxy downloads a cold blob once per concurrent
// client and streams nothing it shares, downloads a whole blob to answer
// a HEAD, ignores Range on a miss, and cannot tell a cut upstream body
// from a complete one. Here:
//
//   - A cache hit is served by the local store as before (Range, HEAD and
//     conditional requests included); on lrufilesystem the gateway answers
//     most hits from the file itself before they get here.
//   - A blob the cache holds for another repository (another registry
//     prefix, or another repository of the same registry) is linked into
//     this one after ECR's HEAD for this repository confirms it, not
//     downloaded again; ECR's 404 for a repository that lacks it keeps
//     it from being served there.
//   - A HEAD on a miss is answered from ECR's HEAD: no download.
//   - A GET on a miss joins the one download in flight for that
//     repository and digest, or starts it. The download is spooled to a
//     temporary file as it arrives and every client reads that file as it
//     grows, so all get their first bytes before the download ends; a
//     client that asked for a Range gets 206 with just that range once its
//     bytes arrive, while the whole blob is still downloaded and cached.
//     The download runs detached from any client: one that goes away
//     stops only its own copy.
//   - The download is checked (length and digest) before the last byte
//     of any response leaves, whole or ranged; only then, off the clients'
//     path, does the spool enter the local store: the cache driver adopts
//     the file by rename when it can (lrufilesystem, spool on its
//     filesystem: one write and one SHA-256 per blob in all), else it is
//     copied through distribution's blob writer. A body that is cut or
//     stalls past the fetch timeout, or does not match its digest, fails
//     every client that is reading it by closing its connection short of
//     the announced Content-Length (a client sees an error, never a short
//     body that looks complete), and nothing is cached.
//   - Before the spool is written, its room is reserved in the cache
//     driver when it reserves (lrufilesystem: SpaceReserver), evicting
//     least recently used blobs first; the adoption turns the
//     reservation into the blob's. A download whose room cannot be
//     reserved (larger than the bound, the bound held by busy blobs,
//     the filesystem short of space) or whose spool cannot be written
//     (ENOSPC, EDQUOT, EFBIG) is not cached, but goes on: its clients
//     read what the spool holds, then a window in memory shared by all
//     of them (relay.go says why not one download per client), with the
//     same checks before the last byte. A warning (once per blob) and
//     Observer.Uncached (once per download) say so.
//   - Upstream failures become the registry errors a client can act on:
//     404 BLOB_UNKNOWN, 429 TOOMANYREQUESTS, 503 UNAVAILABLE; the details
//     go to the log, not to the client.
//
// Tags. distribution's proxy serves the local tag whenever ECR's answer
// is not a success, even a 404 for a deleted image. Here a tag is asked
// of ECR with a HEAD (a GET follows a 401 or 403, to tell a refused token
// from an IAM denial): a confirmed tag is stored locally; a 404 drops the
// local tag and answers 404 MANIFEST_UNKNOWN; a denial answers 403 DENIED
// saying so; only unavailability (network errors, 5xx, 429, a refused or
// unminted token) serves the local tag, marked for the gateway as stale
// (X-Cache-Status: STALE) with the reason logged. With a revalidation
// window (tagttl), a tag ECR confirmed less than the window ago is served
// from the local store without asking ECR again, for users whose tags are
// immutable or who accept that delay; a stale answer does not start it.
//
// Several replicas. With a Coordinator (package cluster), replicas that
// share one cache also share their downloads: the replica that owns a
// cold blob's download (a Redis lease) runs it as above, and a GET for
// it on any other replica is forwarded to the owner, whose single flight
// serves it as bytes arrive; a forwarded request is never forwarded
// again. With a shared TagWindow, a tag any replica confirmed counts for
// all. A failure of the cache's storage (an S3 bucket out of reach)
// answers 503 UNAVAILABLE naming the cache storage.
//
// What is not done: blobs cached here are not handed to distribution's TTL
// scheduler (size is bounded by the storage driver instead), and
// distribution's notification events are not sent for them.
package pullthrough
