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
	_ func(auth.MintEvent)                      = metrics.ObserveMint
	_ func(http.RoundTripper) http.RoundTripper = metrics.InstrumentTransport
	_ auth.TokenSourceOption                    = auth.WithMintObserver(metrics.ObserveMint)
)
