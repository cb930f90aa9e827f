package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const seedECR = "https://123456789012.dkr.ecr.eu-central-1.amazonaws.com"

// envMap is a lookupFunc over a map, so tests need no process environment.
func envMap(kv ...string) lookupFunc {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// writeCertPair writes a self-signed certificate for 127.0.0.1 and its key.
func writeCertPair(t *testing.T, dir, name string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func TestSeedEnvironmentDefaults(t *testing.T) {
	s, err := loadSettings("", envMap("ECR", seedECR, "PORT", "5000"))
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	checks := []struct{ what, got, want string }{
		{"proxy.remoteurl", s.dist.Proxy.RemoteURL, seedECR},
		{"http.addr", s.dist.HTTP.Addr, ":5000"},
		{"storage driver", s.dist.Storage.Type(), "lrufilesystem"},
		{"rootdirectory", s.dist.Storage.Parameters()["rootdirectory"].(string), "/cache"},
		{"maxsize (CACHE_MAX_SIZE default)", s.dist.Storage.Parameters()["maxsize"].(string), "75g"},
		{"renew interval (RENEW_INTERVAL_HOURS default)", s.ecr.RenewInterval.String(), "6h0m0s"},
		{"region from the ECR URL", s.region, "eu-central-1"},
		{"resolver (system)", s.ecr.Resolver, ""},
		{"tls (ENABLE_SSL default false)", s.dist.HTTP.TLS.Certificate, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestSeedEnvironmentValues(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "proxy")
	base := []string{"ECR", seedECR, "PORT", "5000"}
	tests := []struct {
		name  string
		env   []string
		check func(*settings) (got, want string)
	}{
		{"PORT", []string{"PORT", "8443"}, func(s *settings) (string, string) { return s.dist.HTTP.Addr, ":8443" }},
		{"ECR trailing slash", []string{"ECR", seedECR + "/"}, func(s *settings) (string, string) { return s.dist.Proxy.RemoteURL, seedECR }},
		{"CACHE_MAX_SIZE", []string{"CACHE_MAX_SIZE", "100g"}, func(s *settings) (string, string) {
			return s.dist.Storage.Parameters()["maxsize"].(string), "100g"
		}},
		{"CACHE_DIR", []string{"CACHE_DIR", "/var/cache/ecr"}, func(s *settings) (string, string) {
			return s.dist.Storage.Parameters()["rootdirectory"].(string), "/var/cache/ecr"
		}},
		{"CACHE_KEY is accepted and explained", []string{"CACHE_KEY", "$uri"}, func(s *settings) (string, string) {
			return strings.Join(s.notes, "\n"), "CACHE_KEY=$uri: the cache is content-addressed (by digest), so every key means the same here, " +
				"and a layer shared by several repositories is stored once"
		}},
		{"RENEW_INTERVAL_HOURS", []string{"RENEW_INTERVAL_HOURS", "2"}, func(s *settings) (string, string) { return s.ecr.RenewInterval.String(), "2h0m0s" }},
		{"RENEW_INTERVAL_HOURS fractional", []string{"RENEW_INTERVAL_HOURS", "0.5"}, func(s *settings) (string, string) { return s.ecr.RenewInterval.String(), "30m0s" }},
		{"RESOLVER", []string{"RESOLVER", "8.8.8.8"}, func(s *settings) (string, string) { return s.ecr.Resolver, "8.8.8.8:53" }},
		{"RESOLVER with port", []string{"RESOLVER", "127.0.0.1:5353"}, func(s *settings) (string, string) { return s.ecr.Resolver, "127.0.0.1:5353" }},
		{"ENABLE_SSL", []string{"ENABLE_SSL", "true", "SSL_KEY", key, "SSL_CERTIFICATE", cert}, func(s *settings) (string, string) {
			return s.dist.HTTP.TLS.Certificate + " " + s.dist.HTTP.TLS.Key + " " + s.dist.HTTP.TLS.MinimumTLS, cert + " " + key + " tls1.2"
		}},
		{"ENABLE_SSL false ignores the files", []string{"ENABLE_SSL", "false"}, func(s *settings) (string, string) { return s.dist.HTTP.TLS.Certificate, "" }},
		{"the URL's region over AWS_REGION", []string{"AWS_REGION", "us-east-1"}, func(s *settings) (string, string) { return s.region, "eu-central-1" }},
		{"the URL's region over AWS_DEFAULT_REGION", []string{"AWS_DEFAULT_REGION", "us-west-2"}, func(s *settings) (string, string) { return s.region, "eu-central-1" }},
		{"AWS_REGION for a URL without region", []string{"ECR", "http://registry.internal:5000", "AWS_REGION", "us-east-1"}, func(s *settings) (string, string) { return s.region, "us-east-1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadSettings("", envMap(append(append([]string{}, base...), tt.env...)...))
			if err != nil {
				t.Fatalf("loadSettings: %v", err)
			}
			if got, want := tt.check(s); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestSeedEnvironmentInvalid(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "proxy")
	otherCert, _ := writeCertPair(t, dir, "other")
	tests := []struct {
		name    string
		env     []string
		wantErr []string
	}{
		{"no ECR", []string{"PORT", "5000"}, []string{"ECR is required"}},
		{"no PORT", []string{"ECR", seedECR}, []string{"PORT is required"}},
		{"PORT not a number", []string{"ECR", seedECR, "PORT", "http"}, []string{`PORT="http"`, "1 to 65535"}},
		{"PORT out of range", []string{"ECR", seedECR, "PORT", "70000"}, []string{`PORT="70000"`, "1 to 65535"}},
		{"PORT zero", []string{"ECR", seedECR, "PORT", "0"}, []string{`PORT="0"`}},
		{"ECR not a URL", []string{"ECR", "123456789012.dkr.ecr.eu-central-1.amazonaws.com", "PORT", "5000"}, []string{`ECR="123456789012.dkr`, "registry URL"}},
		{"ECR with a path", []string{"ECR", seedECR + "/team", "PORT", "5000"}, []string{`ECR="` + seedECR + `/team"`, "no path"}},
		{"ECR ftp", []string{"ECR", "ftp://x", "PORT", "5000"}, []string{`ECR="ftp://x"`}},
		{"region not found", []string{"ECR", "http://registry.internal:5000", "PORT", "5000"}, []string{"ecr.region", "AWS_REGION", "registry.internal"}},
		{"bad size", []string{"ECR", seedECR, "PORT", "5000", "CACHE_MAX_SIZE", "lots"}, []string{`CACHE_MAX_SIZE="lots"`, "75g"}},
		{"negative size", []string{"ECR", seedECR, "PORT", "5000", "CACHE_MAX_SIZE", "-1g"}, []string{`CACHE_MAX_SIZE="-1g"`}},
		{"relative CACHE_DIR", []string{"ECR", seedECR, "PORT", "5000", "CACHE_DIR", "cache"}, []string{`CACHE_DIR="cache"`, "absolute"}},
		{"renew not a number", []string{"ECR", seedECR, "PORT", "5000", "RENEW_INTERVAL_HOURS", "six"}, []string{`RENEW_INTERVAL_HOURS="six"`, "hours"}},
		{"renew zero", []string{"ECR", seedECR, "PORT", "5000", "RENEW_INTERVAL_HOURS", "0"}, []string{`RENEW_INTERVAL_HOURS="0"`}},
		{"renew over 12", []string{"ECR", seedECR, "PORT", "5000", "RENEW_INTERVAL_HOURS", "24"}, []string{`RENEW_INTERVAL_HOURS="24"`, "12"}},
		{"RESOLVER a name", []string{"ECR", seedECR, "PORT", "5000", "RESOLVER", "dns.example"}, []string{`RESOLVER="dns.example"`, "IP address"}},
		{"RESOLVER bad port", []string{"ECR", seedECR, "PORT", "5000", "RESOLVER", "8.8.8.8:99999"}, []string{`RESOLVER="8.8.8.8:99999"`, "port"}},
		{"ENABLE_SSL not a boolean", []string{"ECR", seedECR, "PORT", "5000", "ENABLE_SSL", "maybe"}, []string{`ENABLE_SSL="maybe"`, "true or false"}},
		{"ENABLE_SSL without files", []string{"ECR", seedECR, "PORT", "5000", "ENABLE_SSL", "true"}, []string{"ENABLE_SSL=true needs SSL_KEY", "SSL_CERTIFICATE"}},
		{"ENABLE_SSL without key", []string{"ECR", seedECR, "PORT", "5000", "ENABLE_SSL", "true", "SSL_CERTIFICATE", cert}, []string{"SSL_KEY"}},
		{"unreadable key", []string{"ECR", seedECR, "PORT", "5000", "ENABLE_SSL", "true", "SSL_KEY", "/nonexistent/key.pem", "SSL_CERTIFICATE", cert},
			[]string{`SSL_KEY="/nonexistent/key.pem"`, "no such file"}},
		{"mismatched pair", []string{"ECR", seedECR, "PORT", "5000", "ENABLE_SSL", "true", "SSL_KEY", key, "SSL_CERTIFICATE", otherCert},
			[]string{"SSL_CERTIFICATE=", "SSL_KEY=", "not a matching"}},
		{"PORT and REGISTRY_HTTP_ADDR", []string{"ECR", seedECR, "PORT", "5000", "REGISTRY_HTTP_ADDR", ":6000"}, []string{"PORT and REGISTRY_HTTP_ADDR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadSettings("", envMap(tt.env...))
			if err == nil {
				t.Fatal("loadSettings succeeded")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestSeedEnvironmentOverAFile(t *testing.T) {
	path := writeFile(t, validBase)
	s, err := loadSettings(path, envMap("PORT", "7000", "CACHE_MAX_SIZE", "512m"))
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	if s.dist.HTTP.Addr != ":7000" || s.dist.Proxy.RemoteURL != "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com" {
		t.Errorf("addr %q remoteurl %q: want PORT over the file and the file's remoteurl", s.dist.HTTP.Addr, s.dist.Proxy.RemoteURL)
	}
	p := s.dist.Storage.Parameters()
	if s.dist.Storage.Type() != "lrufilesystem" || p["maxsize"] != "512m" || p["rootdirectory"] != "/tmp/x" {
		t.Errorf("storage %s %v: want the file's filesystem bounded as lrufilesystem", s.dist.Storage.Type(), p)
	}
	if _, err := loadSettings(writeFile(t, "version: 0.1\nstorage:\n  inmemory: {}\nproxy:\n  remoteurl: "+seedECR+"\n"), envMap("CACHE_MAX_SIZE", "1g")); err == nil ||
		!strings.Contains(err.Error(), `"inmemory"`) {
		t.Errorf("CACHE_MAX_SIZE over inmemory storage: error %v, want one naming the driver", err)
	}
}

func TestConfigPath(t *testing.T) {
	t.Parallel()
	if p, err := configPath([]string{"/etc/x.yml"}, envMap()); p != "/etc/x.yml" || err != nil {
		t.Errorf("argument: %q %v", p, err)
	}
	if p, err := configPath(nil, envMap("REGISTRY_CONFIGURATION_PATH", "/etc/y.yml", "ECR", seedECR)); p != "/etc/y.yml" || err != nil {
		t.Errorf("REGISTRY_CONFIGURATION_PATH: %q %v", p, err)
	}
	if p, err := configPath(nil, envMap("ECR", seedECR)); p != "" || err != nil {
		t.Errorf("environment only: %q %v", p, err)
	}
	if _, err := configPath(nil, envMap()); err == nil || !strings.Contains(err.Error(), "ECR") {
		t.Errorf("nothing: error %v, want one naming both ways", err)
	}
}

func FuzzSeedValues(f *testing.F) {
	for _, s := range []string{"8.8.8.8", "127.0.0.1:5353", "[::1]:53", "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com", "http://x:1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if addr, err := resolverAddr(v); err == nil {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				t.Fatalf("resolverAddr(%q) = %q, not host:port", v, addr)
			}
		}
		if u, err := registryURL(v); err == nil && !strings.HasPrefix(u, "http") {
			t.Fatalf("registryURL(%q) = %q", v, u)
		}
	})
}
