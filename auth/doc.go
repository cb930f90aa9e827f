// Package auth mints, caches and applies Amazon ECR registry credentials.
//
// ECR's registry API answers with a Basic challenge and accepts
// "Authorization: Basic base64(AWS:<password>)", where the whole
// base64 string is the authorizationToken returned by the ECR API call
// GetAuthorizationToken. Tokens last about 12 hours (the response's
// expiresAt is authoritative) and one token serves every repository the
// principal may reach.
//
// The package has three parts, one concern each:
//
//   - [Registry] and [ParseRegistryURL] recognise an ECR registry host
//     (standard, FIPS, China, dual-stack and the isolated partitions) and
//     [ResolveRegion] decides which region to mint tokens in.
//   - [TokenSource] owns the one token a process uses: it mints through a
//     one-method [ECRAPI] (which *ecr.Client satisfies), shares the token
//     among all callers, collapses concurrent mints into one, renews it in
//     the background before it expires and keeps the still-valid token
//     when a renewal fails.
//   - [Transport] is the http.RoundTripper through which every upstream
//     request goes. It sets the token on requests to the registry host,
//     and only there, so that the 307 redirects ECR answers blob GETs
//     with reach the presigned S3 URL without it (S3 refuses a request
//     carrying both a signature and an Authorization header). When the
//     registry answers 401, or 403 for an expired token, it drops the
//     token, mints once and replays the request when the body allows.
//
// # How this meets distribution's proxy
//
// distribution v3 builds its proxy's credential store internally and
// offers no exported way to supply another. Its remote client, however,
// reads http.DefaultTransport for every request (the /v2/ challenge ping
// and the repository transport alike). The command installs [Transport]
// as http.DefaultTransport, so the token comes from this package and
// nowhere else. Because the ping carries the token, ECR answers it 200
// and distribution records no challenge: its own Basic handler is never
// asked for credentials. The cost is that distribution re-pings /v2/
// before each upstream lookup (it only caches challenges, not their
// absence): one extra round trip per tag resolution or cache miss.
// Avoiding it needs a change in distribution (remember an anonymous 200),
// not a workaround here.
//
// The command also sets proxy.exec to its own binary's "get" command (a
// docker credential helper built on this package). That keeps
// distribution from probing the upstream synchronously at start-up (which
// panics when ECR is unreachable), and it is what distribution would use
// should ECR ever record a challenge; the token it returns is overwritten
// by [Transport] either way.
package auth
