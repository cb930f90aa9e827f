package gateway

// msgManifestRefused answers a read whose upstream manifest
// GuardManifests refused.
const msgManifestRefused = "the upstream registry sent a manifest larger than 4 MiB, or not matching its digest: it was neither served nor cached"

const msgUpstreamUnavailable = "the upstream registry is unavailable and this content is not cached; retry later"

const msgStorageUnavailable = "the cache storage is unavailable; retry later"
