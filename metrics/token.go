package metrics

import (
	"github.com/ecr-proxy/ecr-proxy/auth"
)

// ObserveMint records one ECR token mint. Pass it to
// auth.WithMintObserver. A successful mint sets the token expiry gauge; a
// failed one leaves it at the still-current token's expiry.
func (m *Metrics) ObserveMint(e auth.MintEvent) {
	m.rec.observeMint(e)
}

func (r *recorder) observeMint(e auth.MintEvent) {
	r.mintDuration.Observe(e.Duration.Seconds())
	if e.Err != nil {
		r.mints.WithLabelValues(resultFailure).Inc()
		return
	}
	r.mints.WithLabelValues(resultSuccess).Inc()
	if !e.Token.ExpiresAt.IsZero() {
		r.tokenExpiry.Set(float64(e.Token.ExpiresAt.UnixNano()) / 1e9)
	}
}
