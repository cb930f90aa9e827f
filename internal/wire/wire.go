// Package wire holds the names of the registry protocol, and the URL
// helper, that several of ecr-proxy's packages share: one copy of each.
package wire

import (
	"net/url"
	"strings"
)

const (
	// CacheStatusHeader is the seed proxy's response header saying where a
	// blob or manifest came from: HIT (the cache), MISS (ECR) or STALE
	// (the cache, ECR unavailable).
	CacheStatusHeader = "X-Cache-Status"
	// OctetStream is the media type of a blob served or stored without one.
	OctetStream = "application/octet-stream"
)

// CanonicalHost is u's host:port, lower case, with the scheme's default
// port made explicit, to compare hosts however they are written.
func CanonicalHost(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}
