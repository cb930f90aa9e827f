package ecrtest

// Kind names a kind of request the emulator counts.
type Kind string

// Request kinds counted by the emulator. Every request is counted once,
// whether it succeeds, fails authentication or hits an injected fault.
const (
	// KindTokenMint counts ECR GetAuthorizationToken calls and Token().
	KindTokenMint Kind = "token-mint"
	// KindCallerIdentity counts STS GetCallerIdentity calls.
	KindCallerIdentity Kind = "sts-get-caller-identity"
	// KindWebIdentity counts STS AssumeRoleWithWebIdentity calls.
	KindWebIdentity Kind = "sts-assume-role-with-web-identity"
	// KindIMDS counts every IMDS request (token PUTs included).
	KindIMDS Kind = "imds"
	// KindIMDSCredentials counts IMDS fetches of a role's credentials.
	KindIMDSCredentials Kind = "imds-credentials"
	// KindContainerCreds counts container credentials requests.
	KindContainerCreds Kind = "container-credentials"
	// KindAPIOther counts other requests to the API server.
	KindAPIOther Kind = "api-other"

	// KindPing counts GET/HEAD /v2/.
	KindPing Kind = "ping"
	// KindManifestHEAD counts HEAD /v2/<name>/manifests/<ref>.
	KindManifestHEAD Kind = "manifest-head"
	// KindManifestGET counts GET /v2/<name>/manifests/<ref>.
	KindManifestGET Kind = "manifest-get"
	// KindManifestPUT counts PUT /v2/<name>/manifests/<ref>.
	KindManifestPUT Kind = "manifest-put"
	// KindManifestDELETE counts DELETE /v2/<name>/manifests/<ref>.
	KindManifestDELETE Kind = "manifest-delete"
	// KindBlobHEAD counts HEAD /v2/<name>/blobs/<digest>.
	KindBlobHEAD Kind = "blob-head"
	// KindBlobGET counts GET /v2/<name>/blobs/<digest>.
	KindBlobGET Kind = "blob-get"
	// KindBlobDELETE counts DELETE /v2/<name>/blobs/<digest>.
	KindBlobDELETE Kind = "blob-delete"
	// KindUpload counts every request on /v2/<name>/blobs/uploads/.
	KindUpload Kind = "upload"
	// KindTagsList counts GET /v2/<name>/tags/list.
	KindTagsList Kind = "tags-list"
	// KindCatalog counts GET /v2/_catalog.
	KindCatalog Kind = "catalog"
	// KindReferrers counts GET /v2/<name>/referrers/<digest>.
	KindReferrers Kind = "referrers"
	// KindRegistryOther counts other requests to the registry server.
	KindRegistryOther Kind = "registry-other"

	// KindS3GET counts GET and HEAD requests to the S3 server.
	KindS3GET Kind = "s3-get"
)

func (e *Emulator) count(k Kind) {
	e.mu.Lock()
	e.counts[k]++
	e.mu.Unlock()
}

// Count returns how many requests of kind k the emulator has seen since it
// started or since the last ResetCounts.
func (e *Emulator) Count(k Kind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts[k]
}

// Counts returns a copy of every non-zero counter.
func (e *Emulator) Counts() map[Kind]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[Kind]int, len(e.counts))
	for k, v := range e.counts {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// ResetCounts sets every counter to zero.
func (e *Emulator) ResetCounts() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.counts)
}

// KindAssumeRole counts STS AssumeRole calls.
const KindAssumeRole Kind = "sts-assume-role"
