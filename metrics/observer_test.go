package metrics_test

import (
	"net/http"

	"github.com/ecr-proxy/ecr-proxy/auth"
	"github.com/ecr-proxy/ecr-proxy/metrics"
	"github.com/ecr-proxy/ecr-proxy/pullthrough"
)

// The observers fit the hooks they are made for.
var (
	_ pullthrough.Observer                      = metrics.SingleflightObserver{}
	_ func(auth.MintEvent)                      = (*metrics.Metrics)(nil).ObserveMint
	_ func(http.RoundTripper) http.RoundTripper = (*metrics.Metrics)(nil).InstrumentTransport
	_ func(string, bool, int64)                 = (*metrics.Metrics)(nil).ObserveServed
)
