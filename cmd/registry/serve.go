package main

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" //nolint:gosec // served on the debug address only, as distribution does
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/docker/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	ecrauth "github.com/ecr-proxy/ecr-proxy/auth"
	"github.com/ecr-proxy/ecr-proxy/gateway"
	ecrmetrics "github.com/ecr-proxy/ecr-proxy/metrics"
	"github.com/ecr-proxy/ecr-proxy/pullthrough"
	"github.com/ecr-proxy/ecr-proxy/pushthrough"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// newServeCmd replaces distribution's serve command: it sets up ECR
// credentials, then runs distribution's registry.
func newServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:          "serve [config.yml]",
		Short:        "serve pulls from ECR through the local cache, and pushes to ECR",
		Long:         serveHelp,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := configPath(args, os.LookupEnv)
			if err != nil {
				return err
			}
			s, err := loadSettings(path, os.LookupEnv)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), s)
		},
	}
}

func serve(ctx context.Context, s *settings) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := prepareProcess(s); err != nil {
		return err
	}
	plain := http.DefaultTransport
	up, err := newUpstreamSide(ctx, s)
	if err != nil {
		return err
	}
	http.DefaultTransport = bypassCache(s, http.DefaultTransport, plain) // the s3 cache is not ECR
	spool, err := spoolDir(s)
	if err != nil {
		return err
	}
	if privateSpool(s, spool) {
		defer os.RemoveAll(spool) //nolint:errcheck // best effort at exit
	}
	cacheLock, err := serveLock(s) // garbage-collect refuses to run meanwhile
	if err != nil {
		return err
	}
	defer cacheLock.Close() //nolint:errcheck // releases the lock
	shared, err := setupCluster(s, logrus.StandardLogger().WithField("component", "shared-cache"))
	if err != nil {
		return err
	}
	defer shared.close()
	loc, err := newLocalSide(s, up, spool, shared)
	if err != nil {
		return err
	}
	handler := registerGateway(s, up, loc)

	// The cache's metrics go to the registry the debug server's /metrics
	// serves (docker/go-metrics' Handler gathers the default one).
	lrufs.UseRegisterer(s.dist.Storage, prometheus.DefaultRegisterer)
	reg, err := newRegistry(ctx, s.dist) // configures logrus from log:
	if err != nil {
		return fmt.Errorf("start registry: %w", err)
	}
	if loc.shared.lru != nil {
		go loc.shared.lru.RebuildLogged(context.WithoutCancel(ctx)) // an emptied Redis is refilled
	}
	served, err := handedOver(handler)
	if err != nil {
		return err
	}
	log := logrus.StandardLogger()
	logStart(log, s)
	removeLeftovers(ctx, log, loc.spool, loc.cache)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	up.registries.run(runCtx, log)
	startDebugServer(s.dist, s.pprof, log)

	deadline, err := runServer(ctx, s.dist, s.server, served, log)
	drainAndStop(ctx, log, deadline, loc.puller, reg)
	return err
}

// prepareProcess sets what distribution reads from the process before it
// starts: no trace exporter, and this binary as proxy.exec.
func prepareProcess(s *settings) error {
	// distribution starts OpenTelemetry's auto-exporter, which otherwise
	// sends traces to localhost:4318.
	setDefaultEnv("OTEL_TRACES_EXPORTER", "none")
	disableTracing()

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locate own executable for proxy.exec: %w", err)
	}
	// See package auth: distribution gets a placeholder credential from
	// this binary's "get" once, and auth.Transport replaces it.
	s.dist.Proxy.Exec = &configuration.ExecConfig{Command: self}
	if err := os.Setenv(placeholderEnv, "1"); err != nil {
		return fmt.Errorf("set %s: %w", placeholderEnv, err)
	}
	return nil
}

// upstreamSide is what talks to AWS and ECR: each registry's token
// source and Transport, the upstream tracker and the transport every
// upstream request goes through (the one registry's Transport, or an
// auth.Router over several).
type upstreamSide struct {
	mets       *ecrmetrics.Metrics
	registries *upstreamSet
	upstream   *gateway.Upstream
	transport  http.RoundTripper
}

// newUpstreamSide builds the upstream side and installs its transport as
// http.DefaultTransport, which distribution's proxy reads.
func newUpstreamSide(ctx context.Context, s *settings) (*upstreamSide, error) {
	awsCfg, err := loadAWSConfig(ctx, s.region)
	if err != nil {
		return nil, err
	}
	// The registry distribution's debug server serves at /metrics
	// (docker/go-metrics' Handler gathers the default one).
	mets, err := ecrmetrics.New(prometheus.DefaultRegisterer)
	if err != nil {
		return nil, err
	}
	// One token source and Transport per registry; with prefixes, an
	// auth.Router over them is the one upstream of everything below.
	upstream := gateway.NewUpstream()
	registries, err := newUpstreams(s, awsCfg, mets, upstream)
	if err != nil {
		return nil, err
	}
	transport := registries.rt
	// distribution's proxy reads http.DefaultTransport for every upstream
	// request: this is where ECR tokens enter it, and where the manifests
	// it fetches are bounded and checked against their digests.
	http.DefaultTransport = gateway.GuardManifests(transport)
	return &upstreamSide{mets: mets, registries: registries, upstream: upstream, transport: transport}, nil
}

// localSide is what reads and writes the cache: the pullthrough, the push
// passthrough with its write-through, and, once distribution has built
// its app, the cache's driver.
type localSide struct {
	spool      string
	puller     *pullthrough.Puller
	clientAuth distauth.AccessController
	push       *pushthrough.Passthrough // nil when writes are disabled
	cache      storagedriver.StorageDriver
	files      gateway.BlobFiles // the driver, when it opens blob files
	shared     *cluster          // Redis and the cluster-wide bound, if configured
}

// newLocalSide installs the pullthrough and the write-through, both
// spooling in spool, on distribution's local namespace and builds the
// push passthrough.
func newLocalSide(s *settings, up *upstreamSide, spool string, shared *cluster) (*localSide, error) {
	// Pulls of blobs and tags: distribution's proxy, wrapped by the
	// pullthrough middleware (single download per blob shared by its
	// clients, HEAD and Range without waste, honest upstream errors).
	puller, err := installPullthrough(s, up.transport, spool, up.mets.Singleflight(), shared.pullOptions()...)
	if err != nil {
		return nil, err
	}
	// Writes go to ECR through transport, and into the cache.
	writeThrough := pushthrough.NewWriteThrough(
		pushthrough.WithWriteThroughSpoolDir(spool),
		pushthrough.WithWriteThroughLogger(logrus.StandardLogger().WithField("component", "write-through")))
	clientAuth, err := pushthrough.AccessControllerFromConfig(s.dist)
	if err != nil {
		return nil, err
	}
	push, err := newPushPassthrough(s, up.transport, writeThrough, clientAuth)
	if err != nil {
		return nil, err
	}
	loc := &localSide{spool: spool, puller: puller, clientAuth: clientAuth, push: push, shared: shared}
	// Both read and write the cache directly; the gateway serves blob hits
	// from the cache's files when its driver can open them.
	takeFiles := func(_ context.Context, ns distribution.Namespace, d storagedriver.StorageDriver, _ map[string]any) (distribution.Namespace, error) {
		loc.cache = d
		loc.files, _ = d.(gateway.BlobFiles)
		return ns, nil
	}
	if err := installLocalNamespace(s, puller.ServeWhenFull, puller.InitRegistry, writeThrough.Init, takeFiles); err != nil {
		return nil, err
	}
	return loc, nil
}

// registerGateway registers the gateway as the outermost handler of the
// chain distribution builds; runServer serves it (see server.go for why
// not distribution's ListenAndServe). The handler it returns points to is
// set when distribution builds its app, nil until then.
func registerGateway(s *settings, up *upstreamSide, loc *localSide) *http.Handler {
	var handler http.Handler
	registry.RegisterHandler(func(_ *configuration.Configuration, next http.Handler) http.Handler {
		opts := []gateway.Option{
			gateway.WithUpstream(up.upstream),
			up.registries.servedObserver(s.dist.HTTP.Prefix),
			up.registries.readiness(s.dist.Proxy.RemoteURL),
			loc.shared.readiness(),
			gateway.WithLogger(logrus.StandardLogger().WithField("component", "gateway")),
		}
		// distribution's app is built by now, and its registry middleware
		// has handed over the driver.
		if loc.files != nil && s.dist.HTTP.Prefix == "" {
			opts = append(opts, gateway.WithBlobFiles(loc.files, loc.clientAuth, s.dist.HTTP.Headers))
		}
		if loc.push != nil && s.ecr.TagTTL == 0 {
			opts = append(opts, gateway.WithTagHeads(s.dist.HTTP.Headers))
		}
		if loc.push != nil {
			opts = append(opts, gateway.WithPassthrough(loc.push))
		}
		if o := up.registries.tracker(s.dist.HTTP.Prefix); o != nil {
			opts = append(opts, o)
		}
		handler = gateway.New(next, opts...)
		if !s.deleteEnabled {
			handler = refuseDeletes(handler, s.dist.HTTP.Prefix)
		}
		handler = refuseUnknownPrefixes(handler, up.registries.router, s.dist.HTTP.Prefix, loc.clientAuth)
		return handler
	})
	return &handler
}

// logStart logs the effective settings, then the notes and warnings the
// configuration gathered.
func logStart(log logrus.FieldLogger, s *settings) {
	log.WithFields(s.startupFields()).Info("ecr-proxy starting")
	for _, note := range s.notes {
		log.Info(note)
	}
	for _, w := range s.warnings {
		log.Warn(w)
	}
}

// drainAndStop lets the downloads in flight finish until deadline, then shuts
// distribution's registry down.
func drainAndStop(ctx context.Context, log logrus.FieldLogger, deadline time.Time, puller *pullthrough.Puller, reg *registry.Registry) {
	// One budget from SIGTERM to exit: the downloads get what draining the
	// connections left of it (at least a moment, to return at once when
	// nothing is in flight).
	if least := time.Now().Add(time.Millisecond); deadline.Before(least) {
		deadline = least
	}
	drain, cancelDrain := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancelDrain()
	if werr := puller.Wait(drain); werr != nil {
		log.WithError(werr).Warn("blob downloads still running at shutdown; they are not cached")
	}
	if serr := reg.Shutdown(context.WithoutCancel(ctx)); serr != nil {
		log.WithError(serr).Warn("registry shutdown")
	}
}

// pingProbe checks that ECR answers its API version check (any answer
// below 500, its 401 challenge included, means reachable).
func pingProbe(registryURL string, rt http.RoundTripper) gateway.ProbeFunc {
	client := &http.Client{Transport: rt}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, registryURL+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode >= http.StatusInternalServerError {
			return fmt.Errorf("ECR answered %s", resp.Status)
		}
		return nil
	}
}

// loadAWSConfig loads the standard credential chain (env keys, shared
// files and profiles, web identity, container credentials, EC2 IMDS) for
// region. Credentials are refreshed five minutes, less jitter, before
// they expire rather than at the last moment.
func loadAWSConfig(ctx context.Context, region string) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithRegion(region),
		awsconfig.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = 5 * time.Minute
			o.ExpiryWindowJitterFrac = 0.5
		}))
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}

// logIdentity logs the AWS principal in use. STS may be unreachable (VPC
// endpoints, SCPs) while ECR works, so a failure is a warning.
func logIdentity(ctx context.Context, log logrus.FieldLogger, cfg aws.Config) {
	id, err := ecrauth.WhoAmI(ctx, sts.NewFromConfig(cfg), cfg.Credentials)
	if err != nil {
		log.WithError(err).Warn("could not determine the AWS identity; ECR tokens will be minted when AWS answers")
		return
	}
	log.WithFields(logrus.Fields{"arn": id.ARN, "account": id.Account, "credentials_source": id.Source}).Info("AWS identity")
}

// handedOver is the handler distribution handed to the gateway's
// registration (registerGateway), or an error when it handed none: an
// http.Server with a nil handler serves http.DefaultServeMux, which
// carries pprof, and that must never be on the registry's address.
func handedOver(handler *http.Handler) (http.Handler, error) {
	if handler == nil || *handler == nil {
		return nil, errors.New("start registry: distribution did not hand its handler to ecr-proxy's gateway (registry.RegisterHandler); refusing to serve")
	}
	return *handler, nil
}

// startDebugServer serves what distribution's own serve command serves on
// http.debug.addr: /debug/health and Prometheus metrics, and pprof and
// expvar when pprof is set.
func startDebugServer(cfg *configuration.Configuration, pprof bool, log logrus.FieldLogger) {
	if cfg.HTTP.Debug.Addr == "" {
		return
	}
	mux := http.DefaultServeMux // pprof and health register themselves here
	if !pprof {
		mux = http.NewServeMux()
		mux.Handle("/debug/health", http.DefaultServeMux)
	}
	if cfg.HTTP.Debug.Prometheus.Enabled {
		path := cfg.HTTP.Debug.Prometheus.Path
		if path == "" {
			path = "/metrics"
		}
		mux.Handle(path, metrics.Handler())
	}
	_ = expvar.Get("cmdline") // expvar registers /debug/vars on import
	ln, err := net.Listen("tcp", cfg.HTTP.Debug.Addr)
	if err != nil {
		log.WithError(err).Errorf("debug server: listen on %s", cfg.HTTP.Debug.Addr)
		return
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Infof("debug server listening on %s", ln.Addr())
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.WithError(err).Error("debug server stopped")
		}
	}()
}

// setDefaultEnv sets key to value unless the environment already has it.
func setDefaultEnv(key, value string) {
	if _, ok := os.LookupEnv(key); !ok {
		_ = os.Setenv(key, value)
	}
}

// disableTracing installs a no-op tracer provider unless an exporter is
// asked for (OTEL_TRACES_EXPORTER other than "none"). distribution's
// tracing setup always adds a stdout exporter that JSON-encodes every
// span of every storage-driver call, only for the logger to drop it at
// info level: a tenth of the proxy's CPU on warm pulls. Its storage
// drivers take their tracer when the program starts, from OpenTelemetry's
// global delegate, which binds to the first provider installed: so this
// must run before registry.NewRegistry, and then distribution's own
// provider never sees those spans.
func disableTracing() {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		otel.SetTracerProvider(noop.NewTracerProvider())
	}
}
