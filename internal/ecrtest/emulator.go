package ecrtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/handlers"
)

// Emulator is a running ECR emulator. Its methods are safe for concurrent use.
type Emulator struct {
	cfg config

	app       *handlers.App
	appCancel context.CancelFunc
	// backing is app behind the referrers recorder (referrers.go).
	backing http.Handler
	// storageDir holds the backing registry's content; removed by Close.
	storageDir string

	registry *loopServer
	s3       *loopServer
	api      *loopServer

	serving  sync.WaitGroup // Serve goroutines
	inflight sync.WaitGroup // running handlers

	containerToken string

	mu              sync.Mutex
	closed          bool
	closeErr        error
	tokenLifetime   time.Duration
	tokens          map[string]*registryToken
	referrers       map[string][]referrer // by repository@subject digest
	identities      map[string]identity   // by access key ID
	presigned       map[string]presignedURL
	uploads         map[string]int64 // upload UUID -> size of its last PATCH
	imdsTokens      map[string]struct{}
	counts          map[Kind]int
	throttleMints   int
	denyMints       int
	denyWebIdentity int
	failRegistry    int
	failStatus      int
	refuseTokens    int // RefuseTokens: 0, 401 or 403
	cutAfter        int64
	corruptAt       int64
	manifestFault   manifestFault // TamperManifests
	paceBytes       int64         // PaceBlobs: bytes per tick; 0: full speed
	paceEvery       time.Duration
	stall           *stallState
	s3Break         S3Break // BreakS3
	chunkBlobs      bool    // ChunkBlobs
	closing         chan struct{}

	// digestAliases (WithSHA512): repository@digest -> the manifest's
	// sha256 digest, for manifests put by another digest.
	digestAliases sync.Map
}

var accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)

// Start starts every server on loopback (ephemeral ports unless options set
// them) and returns once they all listen. Close releases them.
func Start(opts ...Option) (*Emulator, error) {
	cfg := newConfig(opts)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Emulator{
		cfg:           cfg,
		tokenLifetime: cfg.tokenLifetime,
		tokens:        make(map[string]*registryToken),
		identities:    make(map[string]identity),
		presigned:     make(map[string]presignedURL),
		uploads:       make(map[string]int64),
		imdsTokens:    make(map[string]struct{}),
		counts:        make(map[Kind]int),
		referrers:     make(map[string][]referrer),
		cutAfter:      -1,
		corruptAt:     -1,
		closing:       make(chan struct{}),
	}
	e.identities[AccessKeyID] = identity{
		secret: SecretAccessKey,
		arn:    fmt.Sprintf("arn:aws:iam::%s:user/emulator", cfg.accountID),
		userID: "AIDAEMULATOREXAMPLE01",
	}
	tok, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	e.containerToken = tok

	e.storageDir, err = os.MkdirTemp("", "ecrtest-registry-")
	if err != nil {
		return nil, fmt.Errorf("registry storage: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := newRegistryApp(ctx, e.storageDir, cfg.sha512)
	if err != nil {
		cancel()
		_ = os.RemoveAll(e.storageDir)
		return nil, err
	}
	e.app, e.appCancel = app, cancel
	e.backing = e.recordReferrers(app)

	e.registry = newLoopServer("registry", cfg.registryAddr, e.track(http.HandlerFunc(e.serveRegistry)), &e.serving)
	e.s3 = newLoopServer("s3", cfg.s3Addr, e.track(http.HandlerFunc(e.serveS3)), &e.serving)
	e.api = newLoopServer("aws api", cfg.apiAddr, e.track(http.HandlerFunc(e.serveAPI)), &e.serving)
	for _, s := range []*loopServer{e.registry, e.s3, e.api} {
		if err := s.listen(); err != nil {
			return nil, errors.Join(err, e.Close())
		}
	}
	return e, nil
}

// New is Start for tests: it fails t on error and registers Close with
// t.Cleanup.
func New(t testing.TB, opts ...Option) *Emulator {
	t.Helper()
	e, err := Start(opts...)
	if err != nil {
		t.Fatalf("starting ECR emulator: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("closing ECR emulator: %v", err)
		}
	})
	return e
}

func (c config) validate() error {
	switch {
	case c.region == "":
		return fmt.Errorf("%w: empty region", ErrBadConfig)
	case !accountIDPattern.MatchString(c.accountID):
		return fmt.Errorf("%w: account ID %q is not 12 digits", ErrBadConfig, c.accountID)
	case c.tagsPageSize <= 0:
		return fmt.Errorf("%w: tags page size %d", ErrBadConfig, c.tagsPageSize)
	case c.clock == nil:
		return fmt.Errorf("%w: nil clock", ErrBadConfig)
	case c.logger == nil:
		return fmt.Errorf("%w: nil logger", ErrBadConfig)
	}
	return nil
}

// Close closes every listener and connection and waits for every goroutine
// the emulator started. It is safe to call more than once.
func (e *Emulator) Close() error {
	e.mu.Lock()
	if e.closed {
		err := e.closeErr
		e.mu.Unlock()
		return err
	}
	e.closed = true
	close(e.closing)
	e.mu.Unlock()

	var errs []error
	for _, s := range []*loopServer{e.registry, e.s3, e.api} {
		if s != nil {
			errs = append(errs, s.close())
		}
	}
	e.inflight.Wait()
	e.serving.Wait()
	if e.app != nil {
		errs = append(errs, e.app.Shutdown())
	}
	if e.appCancel != nil {
		e.appCancel()
	}
	if e.storageDir != "" {
		errs = append(errs, os.RemoveAll(e.storageDir))
	}
	err := errors.Join(errs...)
	e.mu.Lock()
	e.closeErr = err
	e.mu.Unlock()
	return err
}

// track counts running handlers so that Close can wait for them.
func (e *Emulator) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			http.Error(w, "emulator closed", http.StatusServiceUnavailable)
			return
		}
		e.inflight.Add(1)
		e.mu.Unlock()
		defer e.inflight.Done()
		h.ServeHTTP(w, r)
	})
}

// RegistryURL is the registry endpoint, "http://127.0.0.1:PORT" (what ECR's
// proxyEndpoint would be; a proxy's proxy.remoteurl).
func (e *Emulator) RegistryURL() string { return "http://" + e.RegistryHost() }

// RegistryHost is the registry's "host:port".
func (e *Emulator) RegistryHost() string { return e.registry.address() }

// S3URL is the S3 server's base URL, "http://127.0.0.2:PORT".
func (e *Emulator) S3URL() string { return "http://" + e.s3.address() }

// APIURL is the AWS API server: ECR API, STS, IMDS and container credentials.
func (e *Emulator) APIURL() string { return "http://" + e.api.address() }

// IMDSURL is the value for AWS_EC2_METADATA_SERVICE_ENDPOINT.
func (e *Emulator) IMDSURL() string { return e.APIURL() }

// ContainerCredentialsURL is the value for AWS_CONTAINER_CREDENTIALS_FULL_URI.
func (e *Emulator) ContainerCredentialsURL() string { return e.APIURL() + e.cfg.containerPath }

// ContainerAuthToken is the token the container credentials endpoint
// requires in Authorization (AWS_CONTAINER_AUTHORIZATION_TOKEN).
func (e *Emulator) ContainerAuthToken() string { return e.containerToken }

// Region is the emulated AWS region.
func (e *Emulator) Region() string { return e.cfg.region }

// AccountID is the emulated AWS account ID, also the registry ID.
func (e *Emulator) AccountID() string { return e.cfg.accountID }

// Env is the "KEY=VALUE" list a proxy needs to reach the emulator with the
// static access key: AWS credentials, region, ECR and STS endpoints, IMDS
// disabled, and ECR=<RegistryURL>.
func (e *Emulator) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_REGION=" + e.cfg.region,
		"AWS_ENDPOINT_URL_ECR=" + e.APIURL(),
		"AWS_ENDPOINT_URL_STS=" + e.APIURL(),
		"AWS_EC2_METADATA_DISABLED=true",
		"ECR=" + e.RegistryURL(),
	}
}
