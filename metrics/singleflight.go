package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// SingleflightWaiters is the gauge ecrproxy_singleflight_waiters: client
// requests attached right now to an upstream blob fetch in flight, the
// one that started it included. SingleflightObserver maintains it.
var SingleflightWaiters prometheus.Gauge = std.sfWaiters

// SingleflightObserver records the single-flight blob fetcher's events. It
// satisfies pullthrough.Observer: pass it to pullthrough.WithObserver.
type SingleflightObserver struct{}

// FlightStarted records that an upstream fetch started (the first request
// for a repository and digest not already in flight).
func (SingleflightObserver) FlightStarted() {
	ensure()
	std.sfFetches.Inc()
}

// WaitersChanged records a client request joining (+1) or leaving (-1) a
// fetch in flight.
func (SingleflightObserver) WaitersChanged(delta int) {
	ensure()
	std.waitersChanged(delta)
}

func (r *recorder) waitersChanged(delta int) {
	if delta > 0 {
		r.sfRequests.Add(float64(delta))
	}
	r.sfWaiters.Add(float64(delta))
}
