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
//     [ChooseRegion] decides which region to mint tokens in: the
//     registry host's over AWS_REGION, as amazon-ecr-credential-helper
//     does, saying so when they differ.
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
//     registry answers 401, or 403 for an expired token (any 403 to a
//     HEAD, whose answer has no body to say why), it drops the token,
//     mints once and replays the request when the body allows. When the
//     registry refuses the new token too, callers get its refusal at once
//     and tokens are minted at most every five seconds while the
//     refusals go on, not once for each request.
//   - [Router] serves several registries (accounts, regions, roles) as
//     one: distribution's proxy has one upstream URL, so the command gives
//     it a virtual one, and the Router picks the registry by the first
//     components of the repository name (its prefix), strips them, sends
//     the request through that registry's own [Transport] (own token
//     source, own re-mint on refusal), and puts the prefix back into the
//     Location and Link headers of the answer. Nothing above it (the
//     proxy, the tag checks, the push passthrough) knows there are
//     several registries, and one registry down or refusing touches only
//     its own prefix. [CheckPrefixes] refuses prefixes that overlap.
//
// # How this meets distribution's proxy
//
// distribution v3 builds its proxy's credential store internally and
// offers no exported way to supply another. Its remote client, however,
// sends every upstream request through http.DefaultTransport (read per
// request). The command installs [Transport] there, so the token comes
// from this package and nowhere else:
//
//  1. distribution pings GET /v2/ anonymously once; [Transport] lets it
//     through, ECR answers its Basic challenge, distribution records it.
//  2. For every later request distribution's Basic handler asks its
//     credential store, which is proxy.exec: the command points it at its
//     own binary's hidden "get" command in placeholder mode. distribution
//     runs it once per process (no lifetime: cached forever) and sets a
//     placeholder Authorization header.
//  3. [Transport] replaces that header with the live token.
//
// proxy.exec is used rather than proxy.username/password because those
// make distribution probe ECR synchronously at start-up and panic when it
// is unreachable. Outside the server, "get" is a real docker credential
// helper that mints a token. This is the cleanest fit distribution's
// public hooks allow; a distribution API to plug a credential store in
// would remove the placeholder step.
package auth
