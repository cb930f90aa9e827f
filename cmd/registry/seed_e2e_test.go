package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// startSeedProxy runs `registry serve` with no configuration file, from
// the seed's variables alone (plus AWS's): env(port) with PORT=port among
// them. It returns the proxy, settled (see settle), and its port.
//
// PORT is a number the proxy binds itself, so the test can only hand it a
// port that was free a moment before (freePort), which another process
// may take meanwhile; then the proxy exits with "address already in use"
// and the start is tried again on another port.
func startSeedProxy(t *testing.T, env func(port string) []string) (*proxytest.Proxy, string) {
	t.Helper()
	const attempts = 5
	for i := 1; ; i++ {
		port := freePort(t)
		p, err := startProcess(t, []string{"serve"}, env(port))
		if err == nil {
			settle(t, p, true)
			return p, port
		}
		if i == attempts || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("port %s was taken before the proxy listened; trying another", port)
	}
}

// freePort returns a loopback port nothing listens on at the moment it
// returns (see reservePort).
func freePort(t *testing.T) string {
	t.Helper()
	_, port, err := net.SplitHostPort(reservePort(t))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// tlsClient trusts the certificates in the given PEM files.
func tlsClient(t *testing.T, certs ...string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range certs {
		pem, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.DisableKeepAlives = true // a new handshake per request
	return &http.Client{Transport: tr}
}

// TestSeedExampleOverTLS runs the binary with the variables of the seed
// README's example (ECR, PORT, RESOLVER, CACHE_MAX_SIZE, ENABLE_SSL,
// SSL_KEY, SSL_CERTIFICATE; the cache directory and the DNS server are
// loopback stand-ins) and pulls over TLS with a real client.
func TestSeedExampleOverTLS(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1.2", 2, 128<<10, types.DockerManifestSchema2)
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "proxy")
	dns := startDNS(t, nil)
	p, port := startSeedProxy(t, func(port string) []string {
		return append(withoutKey(emu.Env(), "ECR"),
			"PORT="+port,
			"RESOLVER="+dns.addr,
			"ECR="+emu.RegistryURL(),
			"CACHE_MAX_SIZE=100g",
			"ENABLE_SSL=true",
			"SSL_KEY="+key,
			"SSL_CERTIFICATE="+cert,
			"CACHE_DIR="+filepath.Join(dir, "cache"),
		)
	})
	if p.Addr != "[::]:"+port && !strings.HasSuffix(p.Addr, ":"+port) {
		t.Errorf("listening on %s, want port %s", p.Addr, port)
	}
	if !strings.Contains(p.Logs(), "listening on") || !strings.Contains(p.Logs(), ", tls") {
		t.Errorf("the proxy does not say it serves TLS")
	}
	ref, err := name.ParseReference("127.0.0.1:"+port+"/team/app:1.2", name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithTransport(tlsClient(t, cert).Transport), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull over TLS: %v", err)
	}
	got, err := readImage(img)
	if err != nil || got.digest != d {
		t.Fatalf("pull over TLS: %s, %v; want %s", got.digest, err, d)
	}
	// TLS 1.1 is refused.
	conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}) //nolint:gosec // the point of the test
	if err == nil {
		_ = conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
}

// TestCertificateRotation: a certificate renewed on disk is served to new
// connections without a restart.
func TestCertificateRotation(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "first")
	p, port := startSeedProxy(t, func(port string) []string {
		return append(withoutKey(emu.Env(), "ECR"), "ECR="+emu.RegistryURL(), "PORT="+port,
			"ENABLE_SSL=true", "SSL_KEY="+key, "SSL_CERTIFICATE="+cert, "CACHE_DIR="+filepath.Join(dir, "cache"))
	})
	servedCN := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // we read the certificate, not trust it
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := servedCN(); cn != "first" {
		t.Fatalf("served %q, want first", cn)
	}
	// Renew: write the new pair beside, then move it over the old files,
	// as certificate tools do.
	newCert, newKey := writeCertPair(t, t.TempDir(), "second")
	for src, dst := range map[string]string{newCert: cert, newKey: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dst+".new", dst); err != nil {
			t.Fatal(err)
		}
	}
	if cn := servedCN(); cn != "second" {
		t.Errorf("after renewal served %q, want second", cn)
	}
	if _, err := p.WaitForLog(t.Context(), "TLS certificate", "reloaded"); err != nil {
		t.Error(err)
	}
}

// dnsServer answers A queries for names in its table on loopback UDP.
type dnsServer struct {
	addr    string
	queries atomic.Int32
}

// startDNS serves names (FQDN with the final dot → IPv4) until cleanup.
func startDNS(t *testing.T, names map[string]net.IP) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	s := &dnsServer{addr: pc.LocalAddr().String()}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var msg dnsmessage.Message
			if err := msg.Unpack(buf[:n]); err != nil || len(msg.Questions) != 1 {
				continue
			}
			q := msg.Questions[0]
			s.queries.Add(1)
			resp := dnsmessage.Message{
				Header:    dnsmessage.Header{ID: msg.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError},
				Questions: msg.Questions,
			}
			if ip, ok := names[strings.ToLower(q.Name.String())]; ok {
				resp.RCode = dnsmessage.RCodeSuccess
				if q.Type == dnsmessage.TypeA {
					resp.Answers = []dnsmessage.Resource{{
						Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
						Body:   &dnsmessage.AResource{A: [4]byte(ip.To4())},
					}}
				}
			}
			out, err := resp.Pack()
			if err == nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	return s
}

// TestResolverIsUsed: with RESOLVER set, the upstream host name is looked
// up at that DNS server: a made-up ECR host only it knows works.
func TestResolverIsUsed(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 1, 64<<10, types.OCIManifestSchema1)
	const host = "ecr.emulator.test"
	dns := startDNS(t, map[string]net.IP{host + ".": net.ParseIP("127.0.0.1")})
	_, port, err := net.SplitHostPort(emu.RegistryHost())
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	p, _ := startSeedProxy(t, func(proxyPort string) []string {
		return append(withoutKey(emu.Env(), "ECR"),
			"ECR=http://"+host+":"+port, "PORT="+proxyPort, "RESOLVER="+dns.addr, "CACHE_DIR="+cacheDir)
	})
	mustPull(t, p, "team/app:1", d)
	if dns.queries.Load() == 0 {
		t.Error("the DNS server was never asked")
	}
}

// TestHealthDuringOutage: /healthz stays 200 and cache hits stay 200 while
// ECR is down; /readyz reports the outage.
func TestHealthDuringOutage(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 1, 64<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})
	status := func(path string) int {
		t.Helper()
		resp, err := http.Get(p.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	mustPull(t, p, "team/app:1", d)
	if h, r := status("/healthz"), status("/readyz"); h != 200 || r != 200 {
		t.Errorf("ECR up: /healthz %d, /readyz %d; want 200, 200", h, r)
	}
	if err := emu.Down(); err != nil {
		t.Fatal(err)
	}
	if h, r := status("/healthz"), status("/readyz"); h != 200 || r != http.StatusServiceUnavailable {
		t.Errorf("ECR down: /healthz %d, /readyz %d; want 200, 503", h, r)
	}
	mustPull(t, p, "team/app:1", d) // cache hits are not refused
	if s := status("/v2/"); s != 200 {
		t.Errorf("ECR down: /v2/ = %d, want 200", s)
	}
	if err := emu.Up(); err != nil {
		t.Fatal(err)
	}
	if r := status("/readyz"); r != 200 {
		t.Errorf("ECR back: /readyz %d, want 200", r)
	}
}

// TestCacheStatusHeader: manifests and blobs say HIT or MISS, as the
// seed's X-Cache-Status did.
func TestCacheStatusHeader(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dgst, blob := seedLayer(t, emu, "team/app:1", 64<<10)
	p := startProxy(t, emu, proxyOpts{})
	get := func(path string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, p.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", string(types.OCIManifestSchema1))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		return resp.Header.Get("X-Cache-Status")
	}
	for _, c := range []struct{ path, want string }{
		{"/v2/team/app/manifests/1", "MISS"},
		{"/v2/team/app/manifests/1", "HIT"},
		{"/v2/team/app/blobs/" + dgst, "MISS"},
		{"/v2/team/app/blobs/" + dgst, "HIT"},
	} {
		if got := get(c.path); got != c.want {
			t.Errorf("GET %s: X-Cache-Status %q, want %q", c.path, got, c.want)
		}
	}
	// One request log line each, with the cache status and what went
	// upstream: the cold blob needed ECR (HEAD and GET), the warm one not.
	// A line is written once its handler returns, which may be after the
	// client has read the response, so the two may even come in either
	// order: wait for each.
	blobPath := `path="/v2/team/app/blobs/` + dgst + `"`
	var lines []string
	for _, status := range []string{"cache_status=MISS", "cache_status=HIT"} {
		line, err := p.WaitForLog(t.Context(), "msg=request", blobPath, status)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	var all []string
	for _, l := range p.Lines() {
		if strings.Contains(l, "msg=request") && strings.Contains(l, blobPath) {
			all = append(all, l)
		}
	}
	if len(all) != 2 {
		t.Fatalf("request log lines for the blob: %q, want 2", all)
	}
	for i, want := range []string{"cache_status=MISS", "cache_status=HIT"} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "request_id=") || !strings.Contains(lines[i], fmt.Sprintf("bytes=%d ", len(blob))) {
			t.Errorf("request log %q: want %s, a request id and the bytes", lines[i], want)
		}
	}
	if strings.Contains(lines[0], "upstream_requests=0") || !strings.HasSuffix(lines[1], "upstream_requests=0") {
		t.Errorf("upstream requests: cold %q, warm %q", lines[0], lines[1])
	}
}

// withoutKey returns env without KEY=... entries.
func withoutKey(env []string, key string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// TestHealthcheckCommand: the image's HEALTHCHECK command succeeds against
// a running proxy (TLS included) and fails when nothing listens.
func TestHealthcheckCommand(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "proxy")
	run := func(port string) error {
		cmd := exec.CommandContext(t.Context(), proxyBinary, "healthcheck")
		cmd.Env = []string{"PORT=" + port, "ENABLE_SSL=true"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := run(freePort(t)); err == nil {
		t.Error("healthcheck succeeded with nothing listening")
	}
	_, port := startSeedProxy(t, func(port string) []string {
		return append(withoutKey(emu.Env(), "ECR"), "ECR="+emu.RegistryURL(), "PORT="+port,
			"ENABLE_SSL=true", "SSL_KEY="+key, "SSL_CERTIFICATE="+cert, "CACHE_DIR="+filepath.Join(dir, "cache"))
	})
	if err := run(port); err != nil {
		t.Errorf("healthcheck against a running proxy: %v", err)
	}
}
