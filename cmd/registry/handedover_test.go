package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestRefusesToServeWithoutDistributionsHandler: when distribution does
// not hand its handler to the gateway, serve refuses to start rather than
// give http.Server a nil handler, which would serve http.DefaultServeMux
// (pprof) on the registry's address.
func TestRefusesToServeWithoutDistributionsHandler(t *testing.T) {
	var none http.Handler
	for _, h := range []*http.Handler{nil, &none} {
		got, err := handedOver(h)
		if err == nil || got != nil || !strings.Contains(err.Error(), "refusing to serve") {
			t.Errorf("handedOver with no handler = %v, %v; want an error refusing to serve", got, err)
		}
	}
	var mux http.Handler = http.NewServeMux()
	if got, err := handedOver(&mux); err != nil || got != mux {
		t.Errorf("handedOver(handler) = %v, %v; want the handler", got, err)
	}
}
