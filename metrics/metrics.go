package metrics

import (
	"errors"
	"sync"
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

	resultHit     = "hit"
	resultMiss    = "miss"
	resultSuccess = "success"
	resultFailure = "failure"
	sourceCache   = "cache"
	sourceUp      = "upstream"
)

// recorder holds one set of collectors. The package keeps one, std,
// registered with prometheus.DefaultRegisterer; tests build their own on a
// private registry.
type recorder struct {
	now func() time.Time

	mints          *prometheus.CounterVec
	mintDuration   prometheus.Histogram
	tokenExpiry    prometheus.Gauge
	upRequests     *prometheus.CounterVec
	upDuration     *prometheus.HistogramVec
	upBytes        *prometheus.CounterVec
	cacheRequests  *prometheus.CounterVec
	servedBytes    *prometheus.CounterVec
	sfWaiters      prometheus.Gauge
	sfFetches      prometheus.Counter
	sfRequests     prometheus.Counter
	registerOnce   sync.Once
	registerResult error
}

func newRecorder(now func() time.Time) *recorder {
	r := &recorder{
		now: now,
		mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "token_mints_total",
			Help: "ECR authorization token mints (GetAuthorizationToken calls), by result.",
		}, []string{"result"}),
		mintDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "token_mint_duration_seconds",
			Help:    "Time one ECR token mint took, SDK retries included, successful or not.",
			Buckets: prometheus.DefBuckets,
		}),
		tokenExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "token_expiry_timestamp_seconds",
			Help: "Unix time at which the current ECR token expires (0 before the first mint). Remaining lifetime: this minus time().",
		}),
		upRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_requests_total",
			Help: "HTTP requests sent to ECR and to the S3 URLs it redirects to, by kind, method and status code (\"error\" when no response came).",
		}, []string{"kind", "method", "code"}),
		upDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_request_duration_seconds",
			Help:    "Time from sending an upstream request to receiving its response headers (or its error), by kind and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"kind", "method"}),
		upBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_response_bytes_total",
			Help: "Bytes of upstream response bodies read, by kind.",
		}, []string{"kind"}),
		cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cache_requests_total",
			Help: "Successful manifest and blob GETs answered, by kind and whether they were served from the cache (hit) or fetched from ECR (miss).",
		}, []string{"kind", "result"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "served_bytes_total",
			Help: "Bytes of manifests and blobs written to clients, by kind and by source: the cache (hits) or ECR (misses).",
		}, []string{"kind", "source"}),
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
	}
	// Series with fixed label sets exist from the start, at 0, so that
	// rate() and ratios work before the first event.
	for _, res := range []string{resultSuccess, resultFailure} {
		r.mints.WithLabelValues(res)
	}
	for _, kind := range []string{KindManifest, KindBlob} {
		r.cacheRequests.WithLabelValues(kind, resultHit)
		r.cacheRequests.WithLabelValues(kind, resultMiss)
		r.servedBytes.WithLabelValues(kind, sourceCache)
		r.servedBytes.WithLabelValues(kind, sourceUp)
	}
	return r
}

func (r *recorder) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		r.mints, r.mintDuration, r.tokenExpiry,
		r.upRequests, r.upDuration, r.upBytes,
		r.cacheRequests, r.servedBytes,
		r.sfWaiters, r.sfFetches, r.sfRequests,
	}
}

// register registers the collectors with reg the first time it is called;
// later calls return the first call's result. A collector already
// registered (by an earlier registration of the same definition) is not
// an error.
func (r *recorder) register(reg prometheus.Registerer) error {
	r.registerOnce.Do(func() {
		var errs []error
		for _, c := range r.collectors() {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					errs = append(errs, err)
				}
			}
		}
		r.registerResult = errors.Join(errs...)
	})
	return r.registerResult
}

// std is the process's recorder, the one the exported functions feed.
var std = newRecorder(time.Now)

// Register registers the package's collectors with
// prometheus.DefaultRegisterer, which distribution's debug server exposes
// at http.debug.prometheus.path. It is safe to call more than once; every
// observer function also registers on first use, so calling it at start
// only makes a conflict (another collector of the same name) an error the
// command can report.
func Register() error { return std.register(prometheus.DefaultRegisterer) }

// ensure registers std on first use by any observer; the error is the
// one Register reports.
func ensure() { _ = Register() }
