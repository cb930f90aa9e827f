// Package pushthrough is ecr-proxy's push path: push passthrough to ECR
// and write-through into the local cache.
//
// How it meets distribution: distribution's proxy mode answers every
// write with 405 (by design), and its handler hook
// (registry.RegisterHandler) is the only place to take writes before the
// app refuses them. The gateway (package gateway), installed on that
// hook, hands each request to [Passthrough.ServeWrite], which takes the
// writes and leaves reads to distribution's app. The write-through
// reaches distribution's local namespace, the store the pull-through
// cache reads first, as a registry middleware ([WriteThrough.Init]),
// which distribution applies to the local namespace before wrapping it
// in its proxy, so it sees a plain store that accepts writes.
//
// # Push passthrough
//
// The [Passthrough] sends the registry API's writes to ECR itself, so
// that one endpoint serves pulls and pushes: blob upload start
// (POST, cross-repository mount included), upload status, chunk, end and
// cancel (GET, PATCH, PUT, DELETE on an upload), manifest PUT and DELETE,
// and blob DELETE. Reads stay with distribution's app.
//
// Target: writes are classified with distribution's own route patterns
// (registry/api/v2, the router its app uses, http.prefix included) and
// the request to ECR is rebuilt from the validated repository name and
// upload ID, reference or digest, on the one configured registry URL.
// The client's path, Host and absolute-form target never choose where a
// request goes; the client's Authorization, Cookie and forwarding headers
// are dropped. An [httputil.ReverseProxy] (FlushInterval -1) over the
// shared auth.Transport sends it, so every write carries the proxy's ECR
// token. Upload bodies stream both ways; only manifests (at most 4 MiB,
// 413 beyond, like ECR) are read whole, so that a manifest PUT refused
// for an expired token is replayed with a fresh one like any body-less
// request.
//
// Client authentication: distribution's handler hook runs before the
// app's own authentication, so the passthrough checks each write itself
// with the access controller built from the same auth: section
// ([AccessControllerFromConfig], [WithAccessController]) and asks exactly
// what the app would ask: pull and push on the repository for POST, PATCH
// and PUT, pull for upload status, delete for DELETE, and pull on the
// source of a mount. A challenge is answered 401 UNAUTHORIZED with the
// controller's WWW-Authenticate, any other refusal 403 DENIED; nothing
// reaches ECR before that. Without an auth: section anyone who reaches the
// proxy pushes with its AWS identity (the command logs this).
//
// ECR's quirks: ECR answers a chunk (PATCH) with 201; the client gets the
// spec's 202 (distribution's client, on which docker's push is built, and
// go-containerregistry accept either; the OCI conformance tests want 202). ECR refuses a non-final chunk under
// 5 MiB; the proxy does not coalesce chunks (that would mean buffering
// parts and faking ranges) and passes ECR's 400 on. docker, containerd,
// crane, skopeo and oras upload a layer in one PATCH or one PUT, so they
// never meet the limit. A mount ECR does not perform (BLOB_MOUNTING
// disabled, the default) comes back as a normal upload start (202 and a
// Location), which clients handle per the spec. ECR's own 401 challenge
// is removed from answers: it is for the proxy, not for the client.
//
// Locations: ECR's upload Locations (absolute or relative, with their
// query, such as a state token) are turned into the proxy's own URL:
// relative when http.relativeurls is set; else on http.host when set;
// else on the scheme and host the client used: the request's Host and
// TLS state, or X-Forwarded-Proto and X-Forwarded-Host (first value),
// which are believed only when the direct peer is in ecr.trustedproxies
// ([ExternalURL]). From any other peer these headers, and Forwarded, are
// removed before distribution sees them too. Locations on other hosts
// are left alone.
//
// Tokens: an expired token at upload start, before an upload's body-less
// final PUT or on a manifest PUT is renewed and the request replayed by
// auth.Transport, invisibly. A streamed chunk cannot be replayed. When ECR
// refuses the token of one (401, or 403 "expired"), the passthrough asks
// ECR for the upload's status, a body-less request that makes
// auth.Transport renew the token, and answers the client 503 UNAVAILABLE
// with Retry-After: go-containerregistry redoes the blob upload on a 503
// (its retry of temporary errors), as docker does for errors it deems
// retryable (a DENIED it does not retry, from moby's retry policy as
// remembered, not verified here); and the session
// at ECR keeps what it had, so a client that resumes (GET status, then
// PATCH from the offset) continues in the same session. ECR checks the
// token when a request starts (as the emulator does; inferred for ECR),
// so a long chunk already streaming is not cut by expiry, and
// auth.TokenSource hands out tokens valid for at least five more minutes:
// in practice only a revoked token meets this path.
//
// Errors: ECR unreachable, or no token to be had, is answered 503
// UNAVAILABLE with a message that reveals nothing internal.
//
// # Write-through
//
// With [WithWriteThrough], what clients push is also put into the local
// cache as it passes, so that the first pull after a push is a cache hit.
// [WriteThrough] gets distribution's local namespace as a registry
// middleware ([WriteThrough.Install]). Each upload session ECR opens is
// tracked by its upload ID; PATCH and PUT bodies are teed into a local
// BlobWriter as they stream to ECR; the Range ECR answers each chunk with
// must match the copy; after ECR answers the final PUT with 201 the copy
// is committed under the client's digest, which distribution verifies.
// A manifest ECR accepted is stored (without checking that its blobs are
// local, as distribution's proxy stores manifests) and tagged; a DELETE
// ECR accepted is mirrored. Every local failure only drops the copy and
// is logged: the push never fails because of the cache. Sessions are
// bounded in number and idle time; a session started elsewhere (another
// replica, before a restart) is not copied. Written-through content is
// not in distribution's proxy TTL scheduler (it is not reachable from
// outside distribution): it leaves the cache by the storage driver's
// eviction or garbage collection.
package pushthrough
