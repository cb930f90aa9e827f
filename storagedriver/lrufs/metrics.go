package lrufs

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are registered once per process with prometheus.DefaultRegisterer,
// which distribution's debug server exposes at /metrics. Counters add up over
// every Driver in the process; the two gauges report the most recently created
// Driver (a registry process creates one).
var (
	metricEvictions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ecrproxy_cache_evictions_total",
		Help: "Blobs evicted from the lrufilesystem cache to keep it under maxsize.",
	})
	metricEvictedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ecrproxy_cache_evicted_bytes_total",
		Help: "Bytes of blob data evicted from the lrufilesystem cache.",
	})
	metricBlobReads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ecrproxy_cache_blob_reads_total",
		Help: "Reads of cached blob data (Reader or GetContent) that found the blob.",
	})

	// current is the index the gauges report.
	current atomic.Pointer[index]

	metricSize = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ecrproxy_cache_size_bytes",
		Help: "Bytes of blob data in the lrufilesystem cache.",
	}, func() float64 {
		size, _ := currentStats()
		return float64(size)
	})
	metricBlobs = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ecrproxy_cache_blobs",
		Help: "Blobs in the lrufilesystem cache.",
	}, func() float64 {
		_, n := currentStats()
		return float64(n)
	})

	registerOnce sync.Once
)

func currentStats() (int64, int) {
	if x := current.Load(); x != nil {
		return x.stats()
	}
	return 0, 0
}

// registerMetrics registers the collectors with the default registry once. A
// collector already registered (by an earlier registration of the same
// definition) is not an error.
func registerMetrics() error {
	var errs []error
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{metricEvictions, metricEvictedBytes, metricBlobReads, metricSize, metricBlobs} {
			if err := prometheus.DefaultRegisterer.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					errs = append(errs, err)
				}
			}
		}
	})
	return errors.Join(errs...)
}
