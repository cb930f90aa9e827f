package metrics

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// namespace prefixes every metric of this package, as it does the cache
// driver's (storagedriver/lrufs).
const namespace = "ecrproxy"

// The fixed label values. Every label of this package takes its values
// from one of these sets, so that no request can create a new series.
const (
	// KindManifest and KindBlob are the kinds of content the cache serves.
	KindManifest = "manifest"
	KindBlob     = "blob"

	// UncachedDiskFull, UncachedTooLarge and UncachedCacheFull are the
	// reasons a blob fetched from ECR was streamed to its clients without
	// being cached: the cache's disk had no room for it, it is larger than
	// the cache's bound (maxsize), or blobs in use and other downloads
	// held all the room under the bound.
	UncachedDiskFull  = "disk_full"
	UncachedTooLarge  = "too_large"
	UncachedCacheFull = "cache_full"

	resultHit     = "hit"
	resultMiss    = "miss"
	resultSuccess = "success"
	resultFailure = "failure"
	sourceCache   = "cache"
	sourceUp      = "upstream"
)

// recorder holds one set of collectors.
type recorder struct {
	now func() time.Time

	mints         *prometheus.CounterVec
	mintDuration  *prometheus.HistogramVec
	tokenExpiry   *prometheus.GaugeVec
	upRequests    *prometheus.CounterVec
	upDuration    *prometheus.HistogramVec
	upBytes       *prometheus.CounterVec
	cacheRequests *prometheus.CounterVec
	servedBytes   *prometheus.CounterVec
	sfWaiters     prometheus.Gauge
	sfFetches     prometheus.Counter
	sfRequests    prometheus.Counter
	uncached      *prometheus.CounterVec
}

func newRecorder(now func() time.Time) *recorder {
	r := &recorder{
		now: now,
		mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "token_mints_total",
			Help: "ECR authorization token mints (GetAuthorizationToken calls), by registry and result.",
		}, []string{"registry", "result"}),
		mintDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "token_mint_duration_seconds",
			Help:    "Time one ECR token mint took, SDK retries included, successful or not, by registry.",
			Buckets: prometheus.DefBuckets,
		}, []string{"registry"}),
		tokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "token_expiry_timestamp_seconds",
			Help: "Unix time at which the registry's current ECR token expires (0 before the first mint). Remaining lifetime: this minus time().",
		}, []string{"registry"}),
		upRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_requests_total",
			Help: "HTTP requests sent to ECR and to the S3 URLs it redirects to, by registry, kind, method and status code (\"error\" when no response came).",
		}, []string{"registry", "kind", "method", "code"}),
		upDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_request_duration_seconds",
			Help:    "Time from sending an upstream request to receiving its response headers (or its error), by registry, kind and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"registry", "kind", "method"}),
		upBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_response_bytes_total",
			Help: "Bytes of upstream response bodies read, by registry and kind.",
		}, []string{"registry", "kind"}),
		cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cache_requests_total",
			Help: "Successful manifest and blob GETs answered, by registry, kind and whether they were served from the cache (hit) or fetched from ECR (miss).",
		}, []string{"registry", "kind", "result"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "served_bytes_total",
			Help: "Bytes of manifests and blobs written to clients, by registry, kind and source: the cache (hits) or ECR (misses).",
		}, []string{"registry", "kind", "source"}),
		sfWaiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "singleflight_waiters",
			Help: "Client requests attached right now to an upstream blob fetch in flight, the one that started it included.",
		}),
		sfFetches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "singleflight_fetches_total",
			Help: "Upstream blob fetches started by the single-flight fetcher (one per repository and digest in flight).",
		}),
		sfRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "singleflight_requests_total",
			Help: "Client requests served by an upstream blob fetch, the one that started it included; minus fetches, the fetches saved.",
		}),
		uncached: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cache_uncached_total",
			Help: "Blobs fetched from ECR and streamed to their clients without being cached, by reason: disk_full (no room on the cache's disk), too_large (larger than maxsize) or cache_full (the room under maxsize held by blobs in use and other downloads); disk_full also counts manifests and tags served without being stored.",
		}, []string{"reason"}),
	}
	// Series with fixed label sets exist from the start, at 0, so that
	// rate() and ratios work before the first event (those with a
	// registry from ForRegistry on).
	for _, reason := range []string{UncachedDiskFull, UncachedTooLarge, UncachedCacheFull} {
		r.uncached.WithLabelValues(reason)
	}
	return r
}

// collectors lists the collectors, each with a function that makes the
// recorder use another collector of the same definition in its place.
func (r *recorder) collectors() []struct {
	c     prometheus.Collector
	adopt func(prometheus.Collector) bool
} {
	type entry = struct {
		c     prometheus.Collector
		adopt func(prometheus.Collector) bool
	}
	return []entry{
		{r.mints, adoptAs(&r.mints)},
		{r.mintDuration, adoptAs(&r.mintDuration)},
		{r.tokenExpiry, adoptAs(&r.tokenExpiry)},
		{r.upRequests, adoptAs(&r.upRequests)},
		{r.upDuration, adoptAs(&r.upDuration)},
		{r.upBytes, adoptAs(&r.upBytes)},
		{r.cacheRequests, adoptAs(&r.cacheRequests)},
		{r.servedBytes, adoptAs(&r.servedBytes)},
		{r.sfWaiters, adoptAs(&r.sfWaiters)},
		{r.sfFetches, adoptAs(&r.sfFetches)},
		{r.sfRequests, adoptAs(&r.sfRequests)},
		{r.uncached, adoptAs(&r.uncached)},
	}
}

// adoptAs returns a function that stores a collector in *field when it is
// of the field's type.
func adoptAs[T prometheus.Collector](field *T) func(prometheus.Collector) bool {
	return func(c prometheus.Collector) bool {
		v, ok := c.(T)
		if ok {
			*field = v
		}
		return ok
	}
}

// register registers the collectors with reg. A collector of the same
// definition already registered there (by an earlier recorder on the same
// registry) is used in place of the recorder's own, so that both feed
// what reg exposes.
func (r *recorder) register(reg prometheus.Registerer) error {
	var errs []error
	for _, e := range r.collectors() {
		err := reg.Register(e.c)
		var are prometheus.AlreadyRegisteredError
		switch {
		case err == nil:
		case errors.As(err, &are) && e.adopt(are.ExistingCollector):
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Metrics is one set of ecr-proxy's collectors, registered with the
// registry given to New. Its methods are the observers the command wires
// in (see the package documentation).
type Metrics struct {
	rec *recorder
	// registry is the registry label of ObserveMint, InstrumentTransport
	// and ObserveServed (see ForRegistry).
	registry string
}

// ForRegistry returns the same collectors with name as the registry
// label of the token, upstream and cache metrics (ObserveMint,
// InstrumentTransport, ObserveServed): the command gives each ECR
// registry its own, its prefix or, alone without one, its host. Its mint
// and cache series exist from then on, at 0. Names come from the
// configuration only, so the label's values are bounded.
func (m *Metrics) ForRegistry(name string) *Metrics {
	for _, res := range []string{resultSuccess, resultFailure} {
		m.rec.mints.WithLabelValues(name, res)
	}
	for _, kind := range []string{KindManifest, KindBlob} {
		m.rec.cacheRequests.WithLabelValues(name, kind, resultHit)
		m.rec.cacheRequests.WithLabelValues(name, kind, resultMiss)
		m.rec.servedBytes.WithLabelValues(name, kind, sourceCache)
		m.rec.servedBytes.WithLabelValues(name, kind, sourceUp)
	}
	return &Metrics{rec: m.rec, registry: name}
}

// New returns the collectors registered with reg: the command passes the
// registry its /metrics endpoint serves (distribution's debug server
// gathers prometheus.DefaultGatherer). A nil reg registers them nowhere.
// It fails when reg already holds another collector under one of the
// names.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{rec: newRecorder(time.Now)}
	if reg != nil {
		if err := m.rec.register(reg); err != nil {
			return nil, fmt.Errorf("register ecr-proxy metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveUncached records one blob fetched from ECR that was not cached,
// for reason UncachedDiskFull, UncachedTooLarge or UncachedCacheFull (any
// other value is ignored, so that the label keeps its fixed set).
func (m *Metrics) ObserveUncached(reason string) {
	m.rec.observeUncached(reason)
}

func (r *recorder) observeUncached(reason string) {
	if reason != UncachedDiskFull && reason != UncachedTooLarge && reason != UncachedCacheFull {
		return
	}
	r.uncached.WithLabelValues(reason).Inc()
}
