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
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if resolver != "" {
		dialer.Resolver = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, resolver)
			},
		}
	}
	// The settings of Go's http.DefaultTransport, which serve replaces.
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
