package ecrtest

import (
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/logx"
)

// Defaults used when no option overrides them.
const (
	DefaultRegion         = "eu-west-1"
	DefaultAccountID      = "123456789012"
	DefaultTokenLifetime  = 12 * time.Hour
	DefaultTagsPageSize   = 50
	DefaultS3Host         = "127.0.0.2"
	DefaultPresignExpiry  = 20 * time.Minute
	DefaultCredsLifetime  = time.Hour
	DefaultContainerPath  = "/v2/credentials/ecrtest"
	defaultLoopbackListen = "127.0.0.1:0"
)

// Option configures an Emulator.
type Option func(*config)

type config struct {
	region              string
	accountID           string
	tokenLifetime       time.Duration
	clock               func() time.Time
	tagsPageSize        int
	blobMounting        bool
	s3Host              string
	registryAddr        string
	apiAddr             string
	s3Addr              string
	s3URLHost           string
	headRedirect        bool
	presignExpiry       time.Duration
	credsLifetime       time.Duration
	containerPath       string
	manifestDigestOnGET bool
	logger              logrus.FieldLogger
	roleOnly            string // WithAssumedRoleOnly
	roleExternalID      string
	sha512              bool // WithSHA512
}

func newConfig(opts []Option) config {
	c := config{
		region:              DefaultRegion,
		accountID:           DefaultAccountID,
		tokenLifetime:       DefaultTokenLifetime,
		clock:               time.Now,
		tagsPageSize:        DefaultTagsPageSize,
		s3Host:              DefaultS3Host,
		registryAddr:        defaultLoopbackListen,
		apiAddr:             defaultLoopbackListen,
		presignExpiry:       DefaultPresignExpiry,
		credsLifetime:       DefaultCredsLifetime,
		containerPath:       DefaultContainerPath,
		manifestDigestOnGET: true,
		logger:              logx.Discard(),
	}
	for _, o := range opts {
		o(&c)
	}
	if c.s3Addr == "" {
		c.s3Addr = net.JoinHostPort(c.s3Host, "0")
	}
	return c
}

// WithRegion sets the AWS region the emulator answers for (default
// "eu-west-1"). SigV4 requests scoped to another region are refused.
func WithRegion(r string) Option { return func(c *config) { c.region = r } }

// WithAccountID sets the 12-digit AWS account ID (default "123456789012").
func WithAccountID(id string) Option { return func(c *config) { c.accountID = id } }

// WithTokenLifetime sets the lifetime of minted registry tokens (default 12h).
func WithTokenLifetime(d time.Duration) Option { return func(c *config) { c.tokenLifetime = d } }

// WithClock sets the clock used for token, credential and presigned URL
// expiry (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithTagsPageSize sets the page size of tags/list when the client sends no
// n parameter (default 50).
func WithTagsPageSize(n int) Option { return func(c *config) { c.tagsPageSize = n } }

// WithBlobMounting enables cross-repository blob mounting (POST
// ?mount=&from=). When disabled (the default, like ECR's BLOB_MOUNTING
// account setting), mount requests start a normal upload.
func WithBlobMounting(enabled bool) Option { return func(c *config) { c.blobMounting = enabled } }

// WithS3Host sets the loopback IP the S3 server listens on (default
// "127.0.0.2"); ignored when WithS3Addr is given.
func WithS3Host(ip string) Option { return func(c *config) { c.s3Host = ip } }

// WithRegistryAddr sets the registry listen address (default "127.0.0.1:0").
func WithRegistryAddr(addr string) Option { return func(c *config) { c.registryAddr = addr } }

// WithAPIAddr sets the AWS API listen address (default "127.0.0.1:0").
func WithAPIAddr(addr string) Option { return func(c *config) { c.apiAddr = addr } }

// WithS3Addr sets the S3 listen address (default "127.0.0.2:0").
func WithS3Addr(addr string) Option { return func(c *config) { c.s3Addr = addr } }

// WithS3URLHost sets the host name written into presigned URLs instead of
// the S3 listen IP, e.g. "localhost" together with WithS3Addr("127.0.0.1:0").
// go-containerregistry's remote package (v0.22.1) refuses redirects from one
// IP literal to another private one (its SSRF protection) but allows host
// names; Go's http.Client still drops Authorization because the host names
// differ.
func WithS3URLHost(host string) Option { return func(c *config) { c.s3URLHost = host } }

// WithHEADRedirect makes blob HEAD answer 307 to S3 like GET. By default
// (false) blob HEAD answers 200 with Content-Length and Docker-Content-Digest.
func WithHEADRedirect(enabled bool) Option { return func(c *config) { c.headRedirect = enabled } }

// WithPresignExpiry sets how long presigned S3 URLs stay valid (default 20m).
func WithPresignExpiry(d time.Duration) Option { return func(c *config) { c.presignExpiry = d } }

// WithCredentialsLifetime sets the lifetime announced for temporary
// credentials issued by STS, IMDS and the container endpoint (default 1h).
// The emulator keeps accepting them after that; only the SDK's refresh
// timing depends on it.
func WithCredentialsLifetime(d time.Duration) Option {
	return func(c *config) { c.credsLifetime = d }
}

// WithContainerCredentialsPath sets the path of the container credentials
// endpoint on the API server (default "/v2/credentials/ecrtest").
func WithContainerCredentialsPath(p string) Option { return func(c *config) { c.containerPath = p } }

// WithManifestDigestOnGET controls whether manifest GETs carry
// Docker-Content-Digest (default true). ECR has been reported to omit it
// on GET and send it only on HEAD; false emulates that.
func WithManifestDigestOnGET(enabled bool) Option {
	return func(c *config) { c.manifestDigestOnGET = enabled }
}

// WithLogger sets the logger of the emulator's own messages (default: discard).
func WithLogger(l logrus.FieldLogger) Option { return func(c *config) { c.logger = l } }

// WithSHA512 makes the registry support digests other than sha256
// (sha512, sha384), as a registry the OCI conformance suite tests with
// sha512 content does: an upload completed or a blob mounted by such a
// digest is answered with it (Docker-Content-Digest and Location), and a
// manifest can be put and read by it. ECR, like the default emulator,
// stores sha256 only: an upload by sha512 is answered with its sha256
// digest and a manifest PUT by a sha512 digest is refused. See sha512.go.
func WithSHA512(enabled bool) Option { return func(c *config) { c.sha512 = enabled } }
