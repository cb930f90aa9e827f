package pushthrough

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/distribution/distribution/v3/configuration"

	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// ExternalURL says how clients reach the proxy, so that the URLs ECR
// answers with (upload session Locations) can be turned into the proxy's.
// The zero value builds absolute URLs from the request's Host and TLS
// state and trusts no forwarding header.
type ExternalURL struct {
	// Relative makes rewritten Locations relative ("/v2/…"), as
	// distribution's http.relativeurls does. It wins over everything else.
	Relative bool
	// Host is the proxy's externally reachable URL, distribution's
	// http.host ("https://registry.example.com"); used when set.
	Host *url.URL
	// TrustedProxies are the networks of the reverse proxies or load
	// balancers whose X-Forwarded-Proto and X-Forwarded-Host are
	// believed. From any other peer these headers are ignored (and
	// removed before distribution sees them).
	TrustedProxies []netip.Prefix
}

// ExternalURLFromConfig reads distribution's http.relativeurls and
// http.host, and takes the trusted proxies as given.
func ExternalURLFromConfig(cfg *configuration.Configuration, trusted []netip.Prefix) (ExternalURL, error) {
	x := ExternalURL{Relative: cfg.HTTP.RelativeURLs, TrustedProxies: trusted}
	if cfg.HTTP.Host != "" {
		u, err := url.Parse(cfg.HTTP.Host)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return ExternalURL{}, fmt.Errorf("http.host %q: want http(s)://host[:port]", cfg.HTTP.Host)
		}
		x.Host = u
	}
	return x, nil
}

// ParseTrustedProxies parses CIDRs ("10.0.0.0/8") and single addresses
// ("192.0.2.7", taken as /32 or /128).
func ParseTrustedProxies(values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		v = strings.TrimSpace(v)
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: want a CIDR such as 10.0.0.0/8 or an IP address", ErrBadTrustedProxy, v)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// trusted reports whether the direct peer of r is a trusted proxy.
func (x *ExternalURL) trusted(r *http.Request) bool {
	if len(x.TrustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range x.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardingHeaders are the headers through which a reverse proxy tells
// the scheme and host the client used.
var forwardingHeaders = []string{"X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"}

// sanitize removes forwarding headers that r's peer is not trusted to
// set, so that neither the gateway nor distribution (which believes them
// unconditionally when it builds URLs) is misled by a client.
func (x *ExternalURL) sanitize(r *http.Request) {
	if x.trusted(r) {
		return
	}
	for _, h := range forwardingHeaders {
		r.Header.Del(h)
	}
}

// base returns the scheme and host under which the client reached the
// proxy, or nil when Locations are to be relative.
func (x *ExternalURL) base(r *http.Request) *url.URL {
	if x.Relative {
		return nil
	}
	if x.Host != nil && x.Host.Host != "" {
		return &url.URL{Scheme: x.Host.Scheme, Host: x.Host.Host, Path: strings.TrimSuffix(x.Host.Path, "/")}
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if x.trusted(r) {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); validHost(h) {
			host = h
		}
	}
	return &url.URL{Scheme: scheme, Host: host}
}

// firstValue returns the first element of a comma-separated header: the
// value set by the proxy nearest to the client.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.ToLower(strings.TrimSpace(first))
}

// validHost reports whether h is a bare host[:port].
func validHost(h string) bool {
	if h == "" || strings.ContainsAny(h, "/?#@\\ \t") {
		return false
	}
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.Hostname() != ""
}

// prefixOf returns the part of the client's path before "/v2/" (the
// http.prefix the client used, usually "").
func prefixOf(r *http.Request) string {
	i := strings.Index(r.URL.Path, "/v2/")
	if i <= 0 {
		return ""
	}
	return r.URL.Path[:i]
}

// rewriteLocation turns a Location answered by the registry at upstream
// into the proxy's own URL for the client's request r. Locations on
// another host are returned unchanged.
func (x *ExternalURL) rewriteLocation(loc string, upstream *url.URL, r *http.Request) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	abs := upstream.ResolveReference(u)
	if !sameHost(abs, upstream) || !strings.HasPrefix(abs.Path, "/v2/") {
		return loc
	}
	out := &url.URL{Path: prefixOf(r) + abs.Path, RawQuery: abs.RawQuery}
	if b := x.base(r); b != nil {
		out.Scheme, out.Host, out.Path = b.Scheme, b.Host, b.Path+out.Path
	}
	return out.String()
}

// sameHost compares scheme, host and port, with default ports explicit.
func sameHost(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && wire.CanonicalHost(a) == wire.CanonicalHost(b)
}
