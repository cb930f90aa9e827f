package metrics

// ObserveServed records one successful manifest or blob GET answered to a
// client: kind is KindManifest or KindBlob (any other value is ignored, so
// that the label keeps its two values), hit says whether it was served
// from the cache (X-Cache-Status: HIT) rather than fetched from ECR
// (MISS), and bytes is how much of the body was written to the client.
// The registry label is m's (see ForRegistry): the registry of the
// repository the client asked for.
func (m *Metrics) ObserveServed(kind string, hit bool, bytes int64) {
	m.rec.observeServed(m.registry, kind, hit, bytes)
}

func (r *recorder) observeServed(registry, kind string, hit bool, bytes int64) {
	if kind != KindManifest && kind != KindBlob {
		return
	}
	result, source := resultMiss, sourceUp
	if hit {
		result, source = resultHit, sourceCache
	}
	r.cacheRequests.WithLabelValues(registry, kind, result).Inc()
	if bytes > 0 {
		r.servedBytes.WithLabelValues(registry, kind, source).Add(float64(bytes))
	}
}
