// Package cluster lets several ecr-proxy replicas that share one cache (an
// S3 bucket) act as one, through Redis: one download from ECR per cold
// blob for the whole cluster, and one tag revalidation window.
//
// # One download per blob
//
// [Coordinator] implements pullthrough.Coordinator. The replica that
// first misses a blob claims its download with a Redis lease (key
// "<prefix>:blob:<repository>@<digest>", value: the replica's advertised
// URL and a token of the process, a deadline of [DefaultLeaseTTL]),
// renewed while bytes arrive and deleted once the blob is committed to
// the shared store or the download failed. A replica that misses the
// same blob while the lease is held forwards its client's request to the
// owner's address, with the client's Authorization and Range, marked with
// pullthrough.ForwardedHeader so that it is never forwarded twice (the
// header's value is the cluster's secret, "<prefix>:forward-secret" in
// Redis, created once by the first replica with SET NX and read at start
// and whenever Redis answers again; a receiver compares it in constant
// time, so that a client sending the header itself is handled as any
// client, never fetching from ECR a blob another replica downloads); the
// owner's own single flight serves it, joining the running download, so
// the client gets the bytes as they arrive. A replica that finds the
// owner unreachable deletes that owner's lease (only that one: the value
// must match) and claims the download itself; an owner that dies without
// anyone noticing loses its lease when the deadline passes. A client cut
// off by its owner's death retries, and that retry reaches a replica that
// takes the download over: at most one more ECR fetch.
//
// # Forward, or wait for the commit
//
// The alternative is to have the other replicas wait until the owner has
// committed the blob to S3 and then serve it from there. For a blob of
// size S arriving from ECR at rate R, waiting delays every other client's
// first byte by S/R plus the upload to S3 (tens of seconds for a 1 GiB
// layer), and then reads the blob back from S3 once per client; forwarding
// delivers the first byte within one extra hop on the cluster network and
// streams at the owner's rate, at the cost of the owner's network carrying
// those clients' bytes twice (in from ECR, out to the peers), which is
// what it would carry from S3 anyway. Docker and containerd pull layers
// with per-request timeouts far shorter than a large layer's download, so
// waiting also risks client timeouts on exactly the large cold layers the
// cluster exists for. Hence forwarding; clients that arrive after the
// commit are served from the shared store by any replica.
//
// # Redis unavailable
//
// Every Redis call has a short deadline; after a failure Redis is left
// alone for a few seconds. Without Redis, Claim answers "mine": each
// replica falls back to its own single flight (one download per replica,
// not per cluster) and its own tag window. The loss and the recovery are
// logged once each; Health reports it for /readyz.
package cluster
