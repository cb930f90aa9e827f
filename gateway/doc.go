// Package gateway is ecr-proxy's outer HTTP handler: it sits in front of
// distribution's registry app (installed with distribution's
// registry.RegisterHandler hook) and fixes what a pull-through cache of
// ECR needs and distribution's proxy does not do.
//
// Honest upstream errors: when ECR cannot be reached, distribution's
// proxy falls back to its local store and answers what it does not have
// with 404 MANIFEST_UNKNOWN (for a tag) or 500 UNKNOWN with the dial error
// and the upstream URL in the body (for a blob). The handler watches the
// upstream through [Upstream] (fed by every round trip of the shared
// transport) and, when a read fails while the upstream was failing,
// answers 503 UNAVAILABLE with a message that says so and nothing
// internal. Cached content is still served: only failures are rewritten.
//
// # Writes
//
// With [WithPassthrough], the registry API's writes (blob uploads,
// manifest PUT, DELETE) and referrers lists are handed to a
// [pushthrough.Passthrough], which sends them to ECR and copies what
// clients push into the cache; forwarding headers a peer is not trusted
// to set are removed from every request first. See package pushthrough.
package gateway
