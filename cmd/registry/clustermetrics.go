package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ecrcluster "github.com/ecr-proxy/ecr-proxy/cluster"
)

// clusterMetrics are the series of the shared cache and of forwarding,
// next to the ecrproxy_* series of the metrics package.
type clusterMetrics struct {
	evictions, evictedBytes prometheus.Counter
	forwards                *prometheus.CounterVec
	size                    atomic.Int64 // last size read from Redis
}

// newClusterMetrics registers the series with reg; sizeOf reads the
// shared cache's size (nil: no bound configured, no size series).
func newClusterMetrics(reg prometheus.Registerer, sizeOf func(context.Context) (int64, error)) (*clusterMetrics, error) {
	m := &clusterMetrics{
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ecrproxy", Name: "shared_cache_evictions_total",
			Help: "Blobs this replica evicted from the shared cache (redislru)."}),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ecrproxy", Name: "shared_cache_evicted_bytes_total",
			Help: "Bytes of the blobs this replica evicted from the shared cache (redislru)."}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ecrproxy", Name: "cluster_forwards_total",
			Help: "Blob GETs this replica forwarded to the replica downloading the blob, by result: forwarded, owner_gone (taken over), cut."},
			[]string{"result"}),
	}
	cs := []prometheus.Collector{m.evictions, m.evictedBytes, m.forwards}
	if sizeOf != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ecrproxy", Name: "shared_cache_size_bytes",
			Help: "Bytes of blob data the shared cache's Redis index counts, for the whole cluster (the last value read while Redis is unavailable)."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if n, err := sizeOf(ctx); err == nil {
					m.size.Store(n)
				}
				return float64(m.size.Load())
			}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register shared cache metrics: %w", err)
		}
	}
	for _, e := range []ecrcluster.Event{ecrcluster.EventForwarded, ecrcluster.EventOwnerGone, ecrcluster.EventCut} {
		m.forwards.WithLabelValues(string(e))
	}
	return m, nil
}

// evicted counts one eviction of n bytes.
func (m *clusterMetrics) evicted(n int64) {
	m.evictions.Inc()
	m.evictedBytes.Add(float64(n))
}

// forwarded counts one forwarding event.
func (m *clusterMetrics) forwarded(e ecrcluster.Event) { m.forwards.WithLabelValues(string(e)).Inc() }
