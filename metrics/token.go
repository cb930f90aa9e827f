package metrics

import (
	"github.com/ecr-proxy/ecr-proxy/auth"
)

// ObserveMint records one ECR token mint. Pass it to
// auth.WithMintObserver. A successful mint sets the token expiry gauge; a
// failed one leaves it at the still-current token's expiry.
func (m *Metrics) ObserveMint(e auth.MintEvent) {
	m.rec.observeMint(m.registry, e)
}

func (r *recorder) observeMint(registry string, e auth.MintEvent) {
	r.mintDuration.WithLabelValues(registry).Observe(e.Duration.Seconds())
	if e.Err != nil {
		r.mints.WithLabelValues(registry, resultFailure).Inc()
		return
	}
	r.mints.WithLabelValues(registry, resultSuccess).Inc()
	if !e.Token.ExpiresAt.IsZero() {
		r.tokenExpiry.WithLabelValues(registry).Set(float64(e.Token.ExpiresAt.UnixNano()) / 1e9)
	}
}
