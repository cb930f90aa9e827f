package metrics

// SingleflightObserver records the single-flight blob fetcher's events. It
// satisfies pullthrough.Observer: pass Metrics.Singleflight to
// pullthrough.WithObserver.
type SingleflightObserver struct {
	rec *recorder
}

// Singleflight returns the observer of the pull-through blob fetcher.
func (m *Metrics) Singleflight() SingleflightObserver {
	return SingleflightObserver{rec: m.rec}
}

// FlightStarted records that an upstream fetch started (the first request
// for a repository and digest not already in flight).
func (o SingleflightObserver) FlightStarted() {
	o.rec.sfFetches.Inc()
}

// WaitersChanged records a client request joining (+1) or leaving (-1) a
// fetch in flight.
func (o SingleflightObserver) WaitersChanged(delta int) {
	o.rec.waitersChanged(delta)
}

// Uncached records a fetched blob that was streamed to its clients
// without being cached, for reason UncachedDiskFull, UncachedTooLarge or
// UncachedCacheFull.
func (o SingleflightObserver) Uncached(reason string) {
	o.rec.observeUncached(reason)
}

func (r *recorder) waitersChanged(delta int) {
	if delta > 0 {
		r.sfRequests.Add(float64(delta))
	}
	r.sfWaiters.Add(float64(delta))
}
