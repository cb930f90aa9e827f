package main

import (
	"context"
	"net"
	"net/http"
	"time"
)

// upstreamTransport is the base transport of every upstream request: Go's
// default, with host names resolved by the DNS server at resolver
// ("ip:port") when one is configured (the seed's RESOLVER), else by the
// system resolver.
func upstreamTransport(resolver string) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone() //nolint:forcetypeassert // the standard library's own type
	if resolver == "" {
		return t
	}
	dialer := &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Resolver: &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, resolver)
			},
		},
	}
	t.DialContext = dialer.DialContext
	return t
}
