package pushthrough

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/google/go-cmp/cmp"
)

func TestRewriteLocation(t *testing.T) {
	t.Parallel()
	ecr, err := url.Parse("https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/team/app/blobs/uploads/")
	if err != nil {
		t.Fatal(err)
	}
	const session = "/v2/team/app/blobs/uploads/7f3e-1b?_state=abc%3D"
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	host, err := url.Parse("https://registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		ext      ExternalURL
		loc      string // ECR's Location
		path     string // the client's request path, default /v2/team/app/blobs/uploads/
		peer     string
		tls      bool
		header   map[string]string
		want     string
		wantSame bool // the Location is returned unchanged
	}{
		{name: "absolute from ECR, plain request", loc: ecr.Scheme + "://" + ecr.Host + session,
			want: "http://proxy.internal:5000" + session},
		{name: "relative from ECR", loc: session, want: "http://proxy.internal:5000" + session},
		{name: "ECR with explicit default port", loc: "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com:443" + session,
			want: "http://proxy.internal:5000" + session},
		{name: "TLS request", loc: session, tls: true, want: "https://proxy.internal:5000" + session},
		{name: "relativeurls", ext: ExternalURL{Relative: true, Host: host}, loc: session, want: session},
		{name: "http.host", ext: ExternalURL{Host: host}, loc: session,
			header: map[string]string{"X-Forwarded-Host": "evil.example"}, want: "https://registry.example.com" + session},
		{name: "trusted proxy", ext: ExternalURL{TrustedProxies: trusted}, loc: session, peer: "10.1.2.3:4567",
			header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"},
			want:   "https://registry.example.com" + session},
		{name: "trusted proxy chain, first value", ext: ExternalURL{TrustedProxies: trusted}, loc: session, peer: "10.1.2.3:4567",
			header: map[string]string{"X-Forwarded-Proto": "HTTPS, http", "X-Forwarded-Host": "registry.example.com:8443, lb.internal"},
			want:   "https://registry.example.com:8443" + session},
		{name: "trusted IPv6 proxy", ext: ExternalURL{TrustedProxies: trusted}, loc: session, peer: "[fd00::1]:4567",
			header: map[string]string{"X-Forwarded-Proto": "https"}, want: "https://proxy.internal:5000" + session},
		{name: "IPv4-mapped peer", ext: ExternalURL{TrustedProxies: trusted}, loc: session, peer: "[::ffff:10.0.0.1]:1",
			header: map[string]string{"X-Forwarded-Proto": "https"}, want: "https://proxy.internal:5000" + session},
		{name: "untrusted peer", ext: ExternalURL{TrustedProxies: trusted}, loc: session, peer: "192.0.2.1:4567",
			header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
			want:   "http://proxy.internal:5000" + session},
		{name: "no trusted proxies", loc: session, peer: "10.1.2.3:4567",
			header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
			want:   "http://proxy.internal:5000" + session},
		{name: "trusted but malformed", ext: ExternalURL{TrustedProxies: trusted}, loc: session, peer: "10.1.2.3:4567",
			header: map[string]string{"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "evil.example/path@x"},
			want:   "http://proxy.internal:5000" + session},
		{name: "http.prefix", loc: session, path: "/registry/v2/team/app/blobs/uploads/",
			want: "http://proxy.internal:5000/registry" + session},
		{name: "relative with http.prefix", ext: ExternalURL{Relative: true}, loc: session, path: "/registry/v2/team/app/blobs/uploads/",
			want: "/registry" + session},
		{name: "another host", loc: "https://s3.example.com/bucket/key?X-Amz-Signature=x", wantSame: true},
		{name: "another scheme", loc: "http://123456789012.dkr.ecr.eu-west-1.amazonaws.com" + session, wantSame: true},
		{name: "not the API", loc: "/other", wantSame: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := tt.path
			if path == "" {
				path = "/v2/team/app/blobs/uploads/"
			}
			r := httptest.NewRequest(http.MethodPost, path, nil)
			r.Host = "proxy.internal:5000"
			if tt.peer != "" {
				r.RemoteAddr = tt.peer
			}
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			want := tt.want
			if tt.wantSame {
				want = tt.loc
			}
			if got := tt.ext.rewriteLocation(tt.loc, ecr, r); got != want {
				t.Errorf("rewriteLocation(%q) = %q, want %q", tt.loc, got, want)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	x := ExternalURL{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	for _, tt := range []struct {
		peer string
		keep bool
	}{{"127.0.0.1:1", true}, {"127.0.0.2:1", false}, {"garbage", false}} {
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.RemoteAddr = tt.peer
		for _, h := range forwardingHeaders {
			r.Header.Set(h, "x")
		}
		x.sanitize(r)
		for _, h := range forwardingHeaders {
			if got := r.Header.Get(h) != ""; got != tt.keep {
				t.Errorf("peer %s: %s kept = %t, want %t", tt.peer, h, got, tt.keep)
			}
		}
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	got, err := ParseTrustedProxies([]string{"10.0.0.0/8", " 192.0.2.7 ", "10.1.2.3/16", "2001:db8::/32", "::ffff:192.0.2.8"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.8/32"),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "10.0.0.0/33", "proxy.internal", "10.0.0.1:80"} {
		if _, err := ParseTrustedProxies([]string{bad}); !errors.Is(err, ErrBadTrustedProxy) {
			t.Errorf("ParseTrustedProxies(%q) error %v, want ErrBadTrustedProxy", bad, err)
		}
	}
}

func TestExternalURLFromConfig(t *testing.T) {
	t.Parallel()
	var cfg configuration.Configuration
	cfg.HTTP.Host = "https://registry.example.com"
	cfg.HTTP.RelativeURLs = true
	x, err := ExternalURLFromConfig(&cfg, nil)
	if err != nil || !x.Relative || x.Host.Host != "registry.example.com" {
		t.Errorf("ExternalURLFromConfig = %+v, %v", x, err)
	}
	cfg.HTTP.Host = "registry.example.com"
	if _, err := ExternalURLFromConfig(&cfg, nil); err == nil {
		t.Error("http.host without a scheme accepted")
	}
}

func FuzzRewriteLocation(f *testing.F) {
	f.Add("/v2/team/app/blobs/uploads/u?_state=x", "registry.example.com", "https")
	f.Add("https://ecr.example:443/v2/a/blobs/uploads/u", "evil/path", "ftp")
	f.Add("http://other.example/v2/x", "", "")
	upstream := &url.URL{Scheme: "https", Host: "ecr.example"}
	trusted, err := ParseTrustedProxies([]string{"127.0.0.0/8"})
	if err != nil {
		f.Fatal(err)
	}
	x := ExternalURL{TrustedProxies: trusted}
	f.Fuzz(func(t *testing.T, loc, fwdHost, fwdProto string) {
		r := httptest.NewRequest(http.MethodPost, "http://proxy.local:5000/v2/team/app/blobs/uploads/", nil)
		r.RemoteAddr = "127.0.0.1:1234"
		r.Header.Set("X-Forwarded-Host", fwdHost)
		r.Header.Set("X-Forwarded-Proto", fwdProto)
		got := x.rewriteLocation(loc, upstream, r)
		if got == loc {
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("rewriteLocation(%q) = %q: %v", loc, got, err)
		}
		if strings.EqualFold(u.Hostname(), upstream.Hostname()) {
			t.Fatalf("rewriteLocation(%q) = %q still points at ECR", loc, got)
		}
		if u.Host != "proxy.local:5000" && !validHost(u.Host) {
			t.Fatalf("rewriteLocation(%q) = %q: host %q is not a plain host", loc, got, u.Host)
		}
	})
}

func FuzzParseTrustedProxies(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8", "300.1.1.1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := ParseTrustedProxies([]string{v})
		if err != nil {
			return
		}
		for _, p := range got {
			if !p.IsValid() {
				t.Fatalf("ParseTrustedProxies(%q) gave an invalid prefix %v", v, p)
			}
		}
	})
}
