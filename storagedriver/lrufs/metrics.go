package lrufs

import (
	"errors"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/prometheus/client_golang/prometheus"
)

// RegistererParameter is the storage parameter that carries a
// prometheus.Registerer to FromParameters (and so through distribution's
// driver factory). A program sets it with UseRegisterer; it cannot come
// from a configuration file.
const RegistererParameter = "metricsregisterer"

// driverMetrics are one Driver's counters. Its gauges read the index.
type driverMetrics struct {
	evictions    prometheus.Counter
	evictedBytes prometheus.Counter
	blobReads    prometheus.Counter
	corrupt      prometheus.Counter
}

func newDriverMetrics() *driverMetrics {
	return &driverMetrics{
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecrproxy_cache_evictions_total",
			Help: "Blobs evicted from the lrufilesystem cache to keep it under maxsize.",
		}),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecrproxy_cache_evicted_bytes_total",
			Help: "Bytes of blob data evicted from the lrufilesystem cache.",
		}),
		blobReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecrproxy_cache_blob_reads_total",
			Help: "Reads of cached blob data (Reader, GetContent or OpenLinked) that found the blob.",
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecrproxy_cache_corrupt_blobs_total",
			Help: "Blobs dropped from the lrufilesystem cache because their data file no longer matched them (size at open, or digest at verify).",
		}),
	}
}

// register registers the counters and three gauges of x with reg. A counter
// already registered there (by another Driver on the same registry) is
// shared: counts add up. Gauges already registered keep reporting the first
// Driver's index.
func (m *driverMetrics) register(reg prometheus.Registerer, x *index) error {
	var errs []error
	for _, c := range []*prometheus.Counter{&m.evictions, &m.evictedBytes, &m.blobReads, &m.corrupt} {
		err := reg.Register(*c)
		var are prometheus.AlreadyRegisteredError
		switch {
		case err == nil:
		case errors.As(err, &are):
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				*c = existing
			}
		default:
			errs = append(errs, err)
		}
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ecrproxy_cache_size_bytes",
			Help: "Bytes of blob data in the lrufilesystem cache.",
		}, func() float64 {
			size, _ := x.stats()
			return float64(size)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ecrproxy_cache_reserved_bytes",
			Help: "Bytes of room held under maxsize for blobs being downloaded or pushed into the lrufilesystem cache.",
		}, func() float64 {
			x.mu.Lock()
			defer x.mu.Unlock()
			return float64(x.reserved)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ecrproxy_cache_blobs",
			Help: "Blobs in the lrufilesystem cache.",
		}, func() float64 {
			_, n := x.stats()
			return float64(n)
		}),
	}
	for _, g := range gauges {
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(g); err != nil && !errors.As(err, &are) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// UseRegisterer makes the lrufilesystem Driver that distribution builds
// from storage register its metrics with reg, by setting
// RegistererParameter among its parameters. It does nothing when storage
// configures another driver. Call it before distribution's app is built;
// without it, that Driver registers its metrics nowhere.
func UseRegisterer(storage configuration.Storage, reg prometheus.Registerer) {
	if storage.Type() != DriverName {
		return
	}
	if storage[DriverName] == nil {
		storage[DriverName] = configuration.Parameters{}
	}
	storage[DriverName][RegistererParameter] = reg
}
