package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	storagemiddleware "github.com/distribution/distribution/v3/registry/storage/driver/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	ecrcluster "github.com/ecr-proxy/ecr-proxy/cluster"
	"github.com/ecr-proxy/ecr-proxy/gateway"
	"github.com/ecr-proxy/ecr-proxy/internal/redisstate"
	"github.com/ecr-proxy/ecr-proxy/internal/storagefail"
	"github.com/ecr-proxy/ecr-proxy/pullthrough"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/redislru"
)

// redisLRUMiddleware is the storage middleware that bounds a shared cache
// (storagedriver/redislru).
const redisLRUMiddleware = "redislru"

// Variables of the scaled-out setup (several replicas, one cache).
const (
	// envRedisAddr is the Redis server (host:port, or a comma-separated
	// list for a cluster): redis.addrs.
	envRedisAddr = "REDIS_ADDR"
	// envAdvertiseURL is ecr.advertise: the URL the other replicas reach
	// this one at (http://$(POD_IP):5000).
	envAdvertiseURL = "ADVERTISE_URL"
	// envAdvertiseCAs is ecr.advertisecas: comma-separated PEM files of
	// the CAs of the other replicas' certificates (https ADVERTISE_URL).
	envAdvertiseCAs = "ADVERTISE_CAS"
	// envSpoolDir is ecr.spooldir: where downloads in flight are spooled.
	envSpoolDir = "SPOOL_DIR"
	// envRedisPassword is redis.password.
	envRedisPassword = "REDIS_PASSWORD" //nolint:gosec // a variable's name, not a credential
)

// cluster is what several replicas share: the Redis client, and the
// bounded cache driver once distribution has created it.
type cluster struct {
	rdb   redis.UniversalClient   // nil without a redis section
	redis *redisstate.State       // whether rdb answers, for every part using it
	lru   *redislru.Driver        // nil without the redislru middleware
	coord *ecrcluster.Coordinator // nil unless the cache is shared
}

// redisLost is logged once when Redis stops answering: what goes on.
const redisLost = "each replica downloads its cold blobs for itself, keeps its own tag window, " +
	"and the shared cache's bound is not enforced, until it answers"

// pullOptions are the pullthrough's options of the cluster: its
// downloads are shared with the other replicas.
func (c *cluster) pullOptions() []pullthrough.Option {
	if c.coord == nil {
		return nil
	}
	return []pullthrough.Option{pullthrough.WithCoordinator(c.coord)}
}

// sharedCache reports whether the cache is one several replicas can
// share (not a local directory or memory).
func sharedCache(s *settings) bool {
	switch s.dist.Storage.Type() {
	case lruDriver, "filesystem", "inmemory":
		return false
	}
	return true
}

// sharedPrefix is the Redis key prefix of the shared cache: one per
// bucket and key prefix, so that caches sharing one Redis stay apart.
func sharedPrefix(s *settings) string {
	if s.dist.Storage.Type() != s3Driver {
		return "ecr-proxy"
	}
	p, root := s.dist.Storage.Parameters(), ""
	if v, ok := p["rootdirectory"]; ok && v != nil {
		root = strings.Trim(fmt.Sprint(v), "/")
	}
	return fmt.Sprintf("ecr-proxy:s3://%v/%s", p["bucket"], root)
}

// close releases the Redis connections.
func (c *cluster) close() {
	if c.rdb != nil {
		_ = c.rdb.Close()
	}
}

// readiness reports the shared cache's Redis on /readyz: degraded, not
// failing, while it is lost.
func (c *cluster) readiness() gateway.Option {
	if c.rdb == nil {
		return gateway.WithDegradedCheck("redis", nil)
	}
	return gateway.WithDegradedCheck("redis", func() error {
		if c.coord != nil {
			if err := c.coord.Health(); err != nil {
				return err
			}
		}
		if c.lru == nil {
			return nil
		}
		return c.lru.Health()
	})
}

// newRedisClient is a client for distribution's redis section (the keys
// distribution reads for its own cache), or nil when it names no server.
func newRedisClient(cfg configuration.Redis) (redis.UniversalClient, error) {
	o := cfg.Options
	if len(o.Addrs) == 0 {
		return nil, nil
	}
	opts := &redis.UniversalOptions{
		Addrs: o.Addrs, ClientName: o.ClientName, DB: o.DB, Protocol: o.Protocol, Username: o.Username, Password: o.Password,
		SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword, MasterName: o.MasterName,
		MaxRetries: o.MaxRetries, MinRetryBackoff: o.MinRetryBackoff, MaxRetryBackoff: o.MaxRetryBackoff,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolSize: o.PoolSize, PoolTimeout: o.PoolTimeout, MinIdleConns: o.MinIdleConns, MaxIdleConns: o.MaxIdleConns,
		ConnMaxIdleTime: o.ConnMaxIdleTime, ConnMaxLifetime: o.ConnMaxLifetime, MaxRedirects: o.MaxRedirects,
		ReadOnly: o.ReadOnly, RouteByLatency: o.RouteByLatency, RouteRandomly: o.RouteRandomly,
		DisableIdentity: true, // no CLIENT SETINFO: older servers and proxies refuse it
		// Each call's context deadline bounds it (the callers give short
		// ones), not only ReadTimeout: a Redis that hangs must not stall pulls.
		ContextTimeoutEnabled: true,
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = time.Second // a lost Redis must not stall pulls
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = -1 // the callers degrade instead of retrying
	}
	tc, err := redisTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	opts.TLSConfig = tc
	return redis.NewUniversalClient(opts), nil
}

// redisTLS is the TLS configuration of redis.tls, read as distribution
// reads it: TLS when any key is set, the client certificate and key
// together, the root CAs instead of the system's; nil without TLS.
func redisTLS(t configuration.RedisTLSOptions) (*tls.Config, error) {
	if t.Certificate == "" && t.Key == "" && len(t.RootCAs) == 0 {
		return nil, nil
	}
	if (t.Certificate == "") != (t.Key == "") {
		return nil, fmt.Errorf("redis.tls.certificate %q and redis.tls.key %q go together: set both for a client certificate, or neither", t.Certificate, t.Key)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.Certificate != "" {
		cert, err := tls.LoadX509KeyPair(t.Certificate, t.Key)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.certificate %q, redis.tls.key %q: %w", t.Certificate, t.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if len(t.RootCAs) > 0 {
		pool := x509.NewCertPool()
		for i, f := range t.RootCAs {
			pem, err := os.ReadFile(f) //nolint:gosec // a path of the configuration
			if err != nil {
				return nil, fmt.Errorf("redis.tls.rootcas[%d] %q: %w", i, f, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redis.tls.rootcas[%d] %q: no PEM certificate in it", i, f)
			}
		}
		c.RootCAs = pool
	}
	return c, nil
}

// peerCAs is the pool of the CAs in files (ecr.advertisecas) that the
// replicas trust when they forward to each other over TLS, instead of the
// system's; nil (the system's) without files.
func peerCAs(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for i, f := range files {
		pem, err := os.ReadFile(f) //nolint:gosec // a path of the configuration
		if err != nil {
			return nil, fmt.Errorf("ecr.advertisecas[%d] %q (%s): %w", i, f, envAdvertiseCAs, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ecr.advertisecas[%d] %q (%s): no PEM certificate in it", i, f, envAdvertiseCAs)
		}
	}
	return pool, nil
}

// redisLRUOptions returns the options of each redislru middleware entry.
func redisLRUOptions(cfg *configuration.Configuration) []configuration.Parameters {
	var out []configuration.Parameters
	for _, m := range cfg.Middleware["storage"] {
		if m.Name == redisLRUMiddleware && !m.Disabled {
			if m.Options == nil {
				m.Options = configuration.Parameters{}
			}
			out = append(out, m.Options)
		}
	}
	return out
}

// checkCluster checks the redislru middleware's options and that Redis is
// configured for it, and gives it a Redis key prefix of its own per
// bucket and prefix, so that caches sharing one Redis stay apart.
func (s *settings) checkCluster() error {
	if a := s.ecr.Advertise; a != "" {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("ecr.advertise %q (%s): want the URL the other replicas reach this one at, such as http://10.0.3.7:5000", a, envAdvertiseURL)
		}
	}
	if _, err := peerCAs(s.ecr.AdvertiseCAs); err != nil {
		return err
	}
	if err := s.checkSharedTTL(); err != nil {
		return err
	}
	for i, a := range s.dist.Redis.Options.Addrs {
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || n < 1 || n > 65535 {
			return fmt.Errorf("redis.addrs[%d] %q (%s): want host:port, such as redis:6379", i, a, envRedisAddr)
		}
	}
	if len(s.dist.Redis.Options.Addrs) > 0 {
		if _, err := redisTLS(s.dist.Redis.TLS); err != nil {
			return err
		}
	}
	for i, opts := range redisLRUOptions(s.dist) {
		if !sharedCache(s) {
			return fmt.Errorf("middleware.storage[%d] (%s) bounds a cache several replicas share, such as storage.s3; storage.%s is local (lrufilesystem has its own maxsize)",
				i, redisLRUMiddleware, s.dist.Storage.Type())
		}
		if _, err := redislru.FromOptions(opts); err != nil {
			return fmt.Errorf("middleware.storage[%d] (%s): %w", i, redisLRUMiddleware, err)
		}
		if len(s.dist.Redis.Options.Addrs) == 0 {
			return fmt.Errorf("middleware.storage[%d] (%s) keeps its index in Redis: set redis.addrs (%s)", i, redisLRUMiddleware, envRedisAddr)
		}
		if _, ok := opts["prefix"]; !ok {
			opts["prefix"] = sharedPrefix(s)
		}
	}
	return nil
}

// checkSharedTTL keeps distribution's TTL scheduler (proxy.ttl) off a
// shared cache: its state is one file at the store's root
// (/scheduler-state.json) that every replica loads at start and
// overwrites every few seconds with its own entries, so replicas lose each
// other's expiries (distribution issue 4594). Unset, proxy.ttl becomes 0
// there; set above 0, the start is refused. The bound (redislru) frees
// space instead, and tags are revalidated with ECR.
func (s *settings) checkSharedTTL() error {
	if !sharedCache(s) {
		return nil
	}
	if ttl := s.dist.Proxy.TTL; ttl != nil {
		if *ttl > 0 {
			return fmt.Errorf("proxy.ttl %q with the shared storage.%s cache: distribution's TTL scheduler is not safe with several replicas "+
				"(each overwrites the other's expiries in /scheduler-state.json of the shared store; distribution issue 4594); "+
				"set proxy.ttl: 0 (REGISTRY_PROXY_TTL=0) and bound the cache with the %s middleware", ttl.String(), s.dist.Storage.Type(), redisLRUMiddleware)
		}
		return nil
	}
	off := time.Duration(0)
	s.dist.Proxy.TTL = &off
	s.notes = append(s.notes, fmt.Sprintf("proxy.ttl: 0 (no expiry) with the shared storage.%s cache: distribution's TTL scheduler "+
		"is not safe with several replicas; the %s bound frees space", s.dist.Storage.Type(), redisLRUMiddleware))
	return nil
}

// applyShared maps the variables of the scaled-out setup: REDIS_* onto
// the redis section, ADVERTISE_URL onto ecr.advertise, SPOOL_DIR onto
// ecr.spooldir, CACHE_S3_* onto storage.s3 (applyS3).
func (e *seedEnv) applyShared(s *settings) error {
	cfg := s.dist
	if v, ok := e.get(envAdvertiseURL); ok {
		s.ecr.Advertise = v
	}
	if v, ok := e.get(envAdvertiseCAs); ok {
		s.ecr.AdvertiseCAs = nil
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				s.ecr.AdvertiseCAs = append(s.ecr.AdvertiseCAs, f)
			}
		}
	}
	if v, ok := e.get(envRedisAddr); ok {
		if err := e.conflict(envRedisAddr, "REGISTRY_REDIS_ADDRS"); err != nil {
			return err
		}
		var addrs []string
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		cfg.Redis.Options.Addrs = addrs
	}
	if v, ok := e.get(envRedisPassword); ok {
		cfg.Redis.Options.Password = v
	}
	if v, ok := e.get(envSpoolDir); ok {
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%s=%q: want an absolute path", envSpoolDir, v)
		}
		s.ecr.SpoolDir = v
	}
	return e.applyS3(s)
}

// applyClusterBound maps CACHE_MAX_SIZE onto the redislru middleware of
// a shared (s3) cache: the bound holds for the whole cluster.
func (e *seedEnv) applyClusterBound(cfg *configuration.Configuration, size string) error {
	if len(cfg.Redis.Options.Addrs) == 0 {
		return fmt.Errorf("%s over the shared %s cache is a cluster-wide bound kept in Redis: set %s too (or set %s empty: unbounded; the image sets it to 75g)",
			envCacheMaxSize, cfg.Storage.Type(), envRedisAddr, envCacheMaxSize)
	}
	if opts := redisLRUOptions(cfg); len(opts) > 0 {
		opts[0]["maxsize"] = size
		return nil
	}
	if cfg.Middleware == nil {
		cfg.Middleware = map[string][]configuration.Middleware{}
	}
	cfg.Middleware["storage"] = append(cfg.Middleware["storage"], configuration.Middleware{
		Name: redisLRUMiddleware, Options: configuration.Parameters{"maxsize": size},
	})
	return nil
}

// setupCluster creates the Redis client of the configuration and
// registers the redislru middleware with distribution (once per process).
func setupCluster(s *settings, log logrus.FieldLogger) (*cluster, error) {
	if sharedCache(s) {
		if err := installStorageFailures(s); err != nil {
			return nil, err
		}
	}
	rdb, err := newRedisClient(s.dist.Redis)
	if err != nil {
		return nil, err
	}
	c := &cluster{rdb: rdb}
	if c.rdb == nil || !sharedCache(s) {
		return c, nil
	}
	c.redis = redisstate.New(log, redisLost, ecrcluster.DefaultRetryInterval, nil)
	var sizeOf func(context.Context) (int64, error)
	if len(redisLRUOptions(s.dist)) > 0 {
		sizeOf = func(ctx context.Context) (int64, error) {
			if c.lru == nil {
				return 0, errors.New("no shared cache yet")
			}
			return c.lru.Size(ctx)
		}
	}
	mets, err := newClusterMetrics(prometheus.DefaultRegisterer, sizeOf)
	if err == nil {
		err = c.startCoordinator(s, log, mets)
	}
	if err == nil && sizeOf != nil {
		err = c.registerLRU(log, mets)
	}
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// startCoordinator sets up the shared downloads and tag window.
func (c *cluster) startCoordinator(s *settings, log logrus.FieldLogger, mets *clusterMetrics) error {
	scheme := "http"
	if s.dist.HTTP.TLS.Certificate != "" || len(s.dist.HTTP.TLS.LetsEncrypt.Hosts) > 0 {
		scheme = "https"
	}
	cas, err := peerCAs(s.ecr.AdvertiseCAs)
	if err != nil {
		return err
	}
	coord, err := ecrcluster.New(c.rdb, ecrcluster.WithLogger(log), ecrcluster.WithRedisState(c.redis), ecrcluster.WithPrefix(sharedPrefix(s)),
		ecrcluster.WithScheme(scheme), ecrcluster.WithEvents(mets.forwarded), ecrcluster.WithRootCAs(cas))
	if err != nil {
		return err
	}
	c.coord = coord
	// The forwarding secret; without Redis now, it is read once it answers.
	_ = coord.LoadSecret(context.Background())
	if s.ecr.Advertise != "" {
		coord.SetAdvertise(s.ecr.Advertise)
		log.WithField("advertise", s.ecr.Advertise).Info("replica address for the cluster's shared downloads")
	}
	return nil
}

// registerLRU registers the redislru storage middleware with distribution
// (once per process); the driver it creates is kept in c.lru.
func (c *cluster) registerLRU(log logrus.FieldLogger, mets *clusterMetrics) error {
	err := storagemiddleware.Register(redisLRUMiddleware, func(_ context.Context, d storagedriver.StorageDriver, options map[string]any) (storagedriver.StorageDriver, error) {
		p, err := redislru.FromOptions(options)
		if err != nil {
			return nil, fmt.Errorf("middleware.storage %s: %w", redisLRUMiddleware, err)
		}
		p.Logger, p.OnEvict, p.State = log, mets.evicted, c.redis
		lru, err := redislru.New(d, c.rdb, p)
		if err != nil {
			return nil, err
		}
		c.lru = lru
		return lru, nil
	})
	if err != nil {
		return fmt.Errorf("register storage middleware %s: %w", redisLRUMiddleware, err)
	}
	return nil
}

// storageFailuresMiddleware marks the requests whose cache storage calls
// failed, for the gateway's honest 503 (internal/storagefail).
const storageFailuresMiddleware = "ecr-proxy-storage-failures"

// installStorageFailures wraps the (remote) cache driver so that its
// failures reach the client as 503 naming the cache storage.
func installStorageFailures(s *settings) error {
	err := storagemiddleware.Register(storageFailuresMiddleware, func(_ context.Context, d storagedriver.StorageDriver, _ map[string]any) (storagedriver.StorageDriver, error) {
		return storagefail.Driver{StorageDriver: d}, nil
	})
	if err != nil {
		return fmt.Errorf("register storage middleware %s: %w", storageFailuresMiddleware, err)
	}
	if s.dist.Middleware == nil {
		s.dist.Middleware = map[string][]configuration.Middleware{}
	}
	s.dist.Middleware["storage"] = append([]configuration.Middleware{{Name: storageFailuresMiddleware}}, s.dist.Middleware["storage"]...)
	return nil
}

// reconcileAfterGC drops from the shared cache's Redis index the blobs a
// garbage-collect run deleted: distribution's command deletes through the
// bare storage driver, without the storage middleware.
func reconcileAfterGC(ctx context.Context, cfg *configuration.Configuration) error {
	opts := redisLRUOptions(cfg)
	if len(opts) == 0 {
		return nil
	}
	rdb, err := newRedisClient(cfg.Redis)
	if err != nil || rdb == nil {
		return err
	}
	defer rdb.Close() //nolint:errcheck // closing connections
	s := &settings{dist: cfg}
	if err := s.checkCluster(); err != nil { // the prefix serve uses
		return err
	}
	p, err := redislru.FromOptions(opts[0])
	if err != nil {
		return err
	}
	d, err := factory.Create(ctx, cfg.Storage.Type(), cfg.Storage.Parameters())
	if err != nil {
		return fmt.Errorf("storage.%s: %w", cfg.Storage.Type(), err)
	}
	lru, err := redislru.New(d, rdb, p)
	if err != nil {
		return err
	}
	n, err := lru.Reconcile(ctx)
	if err != nil {
		return fmt.Errorf("update the shared cache index in Redis: %w", err)
	}
	if err := lru.Health(); err != nil {
		return errors.New("update the shared cache index in Redis: " + err.Error())
	}
	fmt.Printf("shared cache index: %d deleted blobs dropped\n", n)
	return nil
}
