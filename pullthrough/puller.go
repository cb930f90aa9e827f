package pullthrough

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	"github.com/ecr-proxy/ecr-proxy/internal/blobfile"
	"github.com/ecr-proxy/ecr-proxy/internal/logx"
)

// RepositoryMiddleware is the name under which the command registers
// [Puller.InitRepository] as a distribution repository middleware.
const RepositoryMiddleware = "ecr-proxy-pullthrough"

// SpoolPattern names the spool files of downloads (os.CreateTemp's
// pattern), so that those a killed process left can be found and removed.
const SpoolPattern = "ecr-proxy-blob-*"

// Defaults of a Puller.
const (
	// DefaultCommitTimeout bounds putting one checked download into the
	// local store, as distribution's proxy.cachewritetimeout does.
	DefaultCommitTimeout = 5 * time.Minute
	// DefaultIdleTimeout is how long a download may go without a byte
	// from upstream (or without its response) before it is abandoned.
	// A slow but live download is never cut: a 6 GiB layer at 15 MB/s
	// takes seven minutes.
	DefaultIdleTimeout = time.Minute
	// headCacheTTL is how long an upstream HEAD answer is reused (between
	// distribution's Stat and ServeBlob of one request, and by concurrent
	// requests).
	headCacheTTL = time.Minute
	maxHeadCache = 4096
)

// Puller is the state shared by the two middlewares: the local namespace,
// the downloads in flight and recent upstream answers.
type Puller struct {
	registry      *url.URL
	client        *http.Client
	spoolDir      string
	commitTimeout time.Duration
	idleTimeout   time.Duration
	maxFetchTime  time.Duration // 0: no cap
	tagTTL        time.Duration
	log           logrus.FieldLogger
	observer      Observer
	now           func() time.Time // the tag window's and the HEAD cache's clock
	relayWindow   int              // memory of an uncached download (relay.go)
	coord         Coordinator      // the cluster's download owners (coordinator.go), or nil

	mu      sync.Mutex
	local   distribution.Namespace
	files   Adopter         // the cache driver, when it can adopt downloads
	room    SpaceReserver   // the cache driver, when it reserves room for spools
	opener  blobfile.Opener // the cache driver, when it can open blob files
	flights map[string]*flight
	parked  map[string]parked // request id → the place its Stat took in a download (handoff.go)
	fetches sync.WaitGroup

	heads    singleflight.Group
	headMu   sync.Mutex
	headSeen map[string]headEntry

	tagMu      sync.Mutex
	tagChecked map[string]time.Time
}

// Observer receives events for metrics. Every method must be cheap and
// must not block.
type Observer interface {
	// FlightStarted is called when a download starts.
	FlightStarted()
	// WaitersChanged is called with +1 or -1 as clients join or leave a
	// download.
	WaitersChanged(delta int)
	// Uncached is called once per download that streams its blob to its
	// clients without caching it, with the reason (ReasonDiskFull,
	// ReasonTooLarge, ReasonCacheFull), and with ReasonDiskFull once per
	// manifest or tag from ECR served without being stored (ServeWhenFull).
	Uncached(reason string)
}

// The reasons a download is not cached (Observer.Uncached).
const (
	// ReasonDiskFull: the spool could not be written, or its room not
	// reserved, for lack of space on the cache's disk.
	ReasonDiskFull = "disk_full"
	// ReasonTooLarge: the blob is larger than the cache's bound.
	ReasonTooLarge = "too_large"
	// ReasonCacheFull: blobs in use and other downloads hold all the
	// room under the cache's bound.
	ReasonCacheFull = "cache_full"
)

type nopObserver struct{}

func (nopObserver) FlightStarted()     {}
func (nopObserver) WaitersChanged(int) {}
func (nopObserver) Uncached(string)    {}

// Option configures a Puller.
type Option func(*Puller)

// WithSpoolDir sets where downloads in flight are spooled (default
// os.TempDir()).
func WithSpoolDir(dir string) Option { return func(p *Puller) { p.spoolDir = dir } }

// WithCommitTimeout bounds putting one checked download into the local
// store (DefaultCommitTimeout if not positive).
func WithCommitTimeout(d time.Duration) Option {
	return func(p *Puller) {
		if d > 0 {
			p.commitTimeout = d
		}
	}
}

// WithIdleTimeout sets how long a download may make no progress before
// it is abandoned (DefaultIdleTimeout if not positive).
func WithIdleTimeout(d time.Duration) Option {
	return func(p *Puller) {
		if d > 0 {
			p.idleTimeout = d
		}
	}
}

// WithMaxFetchTime caps the whole of one download, however steadily it
// progresses; 0 (the default) sets no cap.
func WithMaxFetchTime(d time.Duration) Option {
	return func(p *Puller) { p.maxFetchTime = max(d, 0) }
}

// WithTagTTL sets the tag revalidation window; 0 (the default) asks ECR
// on every tag pull, as distribution does.
func WithTagTTL(d time.Duration) Option { return func(p *Puller) { p.tagTTL = d } }

// WithLogger sets the logger (default: discard).
func WithLogger(l logrus.FieldLogger) Option {
	return func(p *Puller) {
		if l != nil {
			p.log = l
		}
	}
}

// WithClock sets the clock of the tag revalidation window and of the
// cache of upstream HEAD answers (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(p *Puller) {
		if now != nil {
			p.now = now
		}
	}
}

// WithObserver sets the metrics observer.
func WithObserver(o Observer) Option {
	return func(p *Puller) {
		if o != nil {
			p.observer = o
		}
	}
}

// New returns a Puller fetching from the registry at registryURL through
// rt, the transport that authenticates to it.
func New(registryURL string, rt http.RoundTripper, opts ...Option) (*Puller, error) {
	u, err := url.Parse(registryURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pullthrough: registry URL %q: want http(s)://host", registryURL)
	}
	if rt == nil {
		return nil, errors.New("pullthrough: nil transport")
	}
	p := &Puller{
		registry:      u,
		client:        &http.Client{Transport: rt},
		spoolDir:      os.TempDir(),
		commitTimeout: DefaultCommitTimeout,
		idleTimeout:   DefaultIdleTimeout,
		relayWindow:   defaultRelayWindow,
		now:           time.Now,
		log:           logx.Discard(),
		observer:      nopObserver{},
		flights:       map[string]*flight{},
		parked:        map[string]parked{},
		headSeen:      map[string]headEntry{},
		tagChecked:    map[string]time.Time{},
	}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// Wait blocks until every download in flight has finished (and its blob
// is committed), or ctx ends. Call it after the server stopped taking
// requests, so that a graceful shutdown keeps what was being fetched.
func (p *Puller) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { p.fetches.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// InitRegistry is the registry middleware: distribution applies it to
// its local namespace before wrapping that in its proxy. It keeps the
// namespace and returns it unchanged.
func (p *Puller) InitRegistry(_ context.Context, ns distribution.Namespace, d storagedriver.StorageDriver, _ map[string]any) (distribution.Namespace, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.local = ns
	p.files, _ = d.(Adopter)
	p.room, _ = d.(SpaceReserver)
	p.opener, _ = d.(blobfile.Opener)
	return ns, nil
}

// Adopter is a cache storage driver that can take a checked download's
// spool file as the blob's data, by rename (lrufs.Driver.Adopt), instead
// of a copy through distribution's blob writer. It must leave the file
// where it was on error, and gone on success.
type Adopter interface {
	Adopt(ctx context.Context, repo string, dgst digest.Digest, file string, size int64) error
}

// SpaceReserver is a cache storage driver that holds room under its
// bound for a spool file before it is written, evicting to make it
// (lrufs.Driver.Reserve): a later Adopt of the file turns the reservation
// into the blob's, Unreserve releases it. Reserve with a larger size
// grows it. Other drivers do not reserve.
type SpaceReserver interface {
	Reserve(ctx context.Context, file string, size int64) error
	Unreserve(file string)
}

func (p *Puller) reserver() SpaceReserver {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.room
}

func (p *Puller) fileOpener() blobfile.Opener {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opener
}

func (p *Puller) adopter() Adopter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.files
}

// InitRepository is the repository middleware: it wraps each proxied
// repository's blob store and tag service.
func (p *Puller) InitRepository(_ context.Context, repo distribution.Repository, _ map[string]any) (distribution.Repository, error) {
	p.mu.Lock()
	local := p.local
	p.mu.Unlock()
	if local == nil {
		return nil, ErrNoLocalStore
	}
	return &repository{Repository: repo, p: p, local: local}, nil
}

// repository wraps a proxied repository.
type repository struct {
	distribution.Repository
	p     *Puller
	local distribution.Namespace
}

func (r *repository) Blobs(ctx context.Context) distribution.BlobStore {
	return &blobStore{BlobStore: r.Repository.Blobs(ctx), p: r.p, local: r.local, name: r.Named()}
}

func (r *repository) Tags(ctx context.Context) distribution.TagService {
	return &tagService{TagService: r.Repository.Tags(ctx), p: r.p, local: r.local, name: r.Named()}
}

// localRepo opens name in the local namespace.
func localRepo(ctx context.Context, ns distribution.Namespace, name reference.Named) (distribution.Repository, error) {
	return ns.Repository(ctx, name)
}

// blobURL is the upstream URL of a blob.
func (p *Puller) blobURL(name reference.Named, dgst string) string {
	u := *p.registry
	u.Path = "/v2/" + name.Name() + "/blobs/" + dgst
	u.RawQuery = ""
	return u.String()
}
