// Package metrics holds ecr-proxy's Prometheus metrics: cache hits and
// misses, bytes served from the cache and from ECR, upstream requests,
// ECR token mints and the single-flight fetcher. The package keeps no
// state of its own: [New] builds one set of collectors and registers it
// with the registry it is given. The command gives it
// prometheus.DefaultRegisterer, the registry distribution's debug server
// exposes (http.debug.addr, at http.debug.prometheus.path, with
// http.debug.prometheus.enabled), next to distribution's own registry_*
// metrics and the cache driver's ecrproxy_cache_* metrics; tests give
// their own.
//
// A [Metrics] value's methods are small observers; the command wires them
// in:
//
//   - [Metrics.ObserveMint] is an auth.WithMintObserver function.
//   - [Metrics.InstrumentTransport] wraps the base http.RoundTripper under
//     auth.Transport, so it sees every hop to ECR and S3.
//   - [Metrics.ObserveServed] is called by the gateway once per manifest
//     or blob GET it answered with success.
//   - [Metrics.Singleflight] is the single-flight blob fetcher's observer
//     (pullthrough.WithObserver), which also counts the blobs it streams
//     without caching them.
//
// Labels take values from fixed sets only: no repository name, tag,
// digest, URL, host, upload id, error text or credential ever becomes a
// label value, so the number of series is bounded and a scrape reveals
// nothing about what was pulled or how ECR was reached. The one
// exception is registry, on the token, upstream and cache request
// metrics ([Metrics.ForRegistry]): a configured registry's prefix, or its
// host when it is the only one, from the configuration alone.
//
// # Metrics of this package
//
// Cache (fed by the gateway, per client request):
//
//	ecrproxy_cache_requests_total{registry,kind="manifest|blob",result="hit|miss"}  counter
//	    Successful manifest and blob GETs, by the registry of the
//	    repository asked for and whether the body came from the cache
//	    (X-Cache-Status: HIT) or was fetched from ECR (MISS).
//	ecrproxy_served_bytes_total{registry,kind="manifest|blob",source="cache|upstream"}  counter
//	    Body bytes written to clients for those requests. The byte hit ratio:
//	      sum(rate(ecrproxy_served_bytes_total{source="cache"}[1h]))
//	        / sum(rate(ecrproxy_served_bytes_total[1h]))
//	ecrproxy_cache_uncached_total{reason="disk_full|too_large|cache_full"}  counter
//	    Blob downloads from ECR streamed to their clients but not cached
//	    (fed by the pull-through fetcher, once per download): the cache's
//	    disk had no room for the blob (its spool could not be written, or
//	    the room for it not reserved), the blob is larger than the cache's
//	    maxsize, or blobs in use and other downloads held all the room
//	    under maxsize. With disk_full it also counts the manifests and
//	    tags fetched from ECR that were served without being stored,
//	    once each.
//
// Upstream (fed by the transport, per HTTP round trip to ECR or S3):
//
//	ecrproxy_upstream_requests_total{registry,kind,method,code}  counter
//	ecrproxy_upstream_request_duration_seconds{registry,kind,method}  histogram
//	    Time to response headers (or error); a blob's download time is not
//	    included, its first byte is.
//	ecrproxy_upstream_response_bytes_total{registry,kind}  counter
//	    Response body bytes read from ECR and S3: what the cache cost in
//	    transfer (blob bodies arrive with kind="s3" after ECR's redirect).
//
// kind is ping (GET /v2/, /readyz's probe included), manifest, blob, tags, upload (a push's blob
// upload), s3 (a presigned URL ECR redirected to) or other; method is GET,
// HEAD, PUT, POST, PATCH, DELETE or other; code is the status code
// (100-599), "error" when no response came, or "other". A request the
// auth transport replays after ECR refused a token counts twice, and so
// does each redirect hop.
//
// ECR token (fed by auth.TokenSource, per mint):
//
//	ecrproxy_token_mints_total{registry,result="success|failure"}  counter
//	ecrproxy_token_mint_duration_seconds{registry}  histogram
//	ecrproxy_token_expiry_timestamp_seconds{registry}  gauge
//	    Unix time the current token expires; 0 before the first mint. A
//	    failed renewal leaves it at the token still in use. Remaining
//	    lifetime: ecrproxy_token_expiry_timestamp_seconds - time().
//
// Single-flight fetcher (fed by the pull-through blob fetcher):
//
//	ecrproxy_singleflight_fetches_total  counter
//	    Upstream blob fetches started (one per repository and digest in
//	    flight).
//	ecrproxy_singleflight_requests_total  counter
//	    Client requests served by a fetch, the one that started it
//	    included. requests - fetches is the downloads coalescing saved.
//	ecrproxy_singleflight_waiters  gauge
//	    Client requests attached right now to a fetch in flight.
//
// # Metrics of the cache driver (storagedriver/lrufs)
//
//	ecrproxy_cache_size_bytes  gauge         bytes of blob data on disk
//	ecrproxy_cache_reserved_bytes  gauge     room held for blobs being downloaded or pushed
//	ecrproxy_cache_blobs  gauge              blobs on disk
//	ecrproxy_cache_evictions_total  counter  blobs evicted to stay under maxsize
//	ecrproxy_cache_evicted_bytes_total  counter
//	ecrproxy_cache_blob_reads_total  counter reads of cached blobs
//
// distribution's own metrics (registry_http_*, registry_storage_*,
// registry_proxy_*) are exposed as well. Its registry_proxy_hits and
// misses are counted inside distribution's proxy stores and do not see
// what the gateway and the pull-through fetcher serve; use
// ecrproxy_cache_requests_total for the hit ratio.
package metrics
