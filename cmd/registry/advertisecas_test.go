package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	ecrcluster "github.com/ecr-proxy/ecr-proxy/cluster"
	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
	"github.com/ecr-proxy/ecr-proxy/internal/logx"
	"github.com/ecr-proxy/ecr-proxy/internal/redisstate"
)

// TestAdvertiseCAs: ecr.advertisecas (ADVERTISE_CAS) names the CA of the
// replicas' certificates, and the coordinator the start sets up forwards
// to a replica serving TLS on loopback with a certificate of that CA; a
// file that cannot be read, or holds no certificate, refuses the start
// with the key and the value.
func TestAdvertiseCAs(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "replica")
	base := "version: 0.1\nstorage:\n  s3: {bucket: b, region: eu-west-1}\nproxy:\n  remoteurl: " + seedECR + "\necr:\n  push: disabled\n"
	for _, tc := range []struct{ name, file, env, want string }{
		{"missing file", base + "  advertisecas: [" + dir + "/none.pem]\n", "", `ecr.advertisecas[0] "` + dir + `/none.pem" (ADVERTISE_CAS)`},
		{"not a certificate", base + "  advertisecas: [" + cert + ", " + key + "]\n", "", `ecr.advertisecas[1] "` + key + `" (ADVERTISE_CAS): no PEM certificate`},
		{"variable, missing file", base, dir + "/none.pem", `ecr.advertisecas[0] "` + dir + `/none.pem"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := envMap()
			if tc.env != "" {
				env = envMap(envAdvertiseCAs, tc.env)
			}
			_, err := loadSettings(writeFile(t, tc.file), env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadSettings: %v, want an error containing %q", err, tc.want)
			}
		})
	}

	s, err := loadSettings(writeFile(t, base), envMap(envAdvertiseCAs, " "+cert+" ,"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ecr.AdvertiseCAs) != 1 || s.ecr.AdvertiseCAs[0] != cert {
		t.Fatalf("ecr.advertisecas from %s: %q, want [%s]", envAdvertiseCAs, s.ecr.AdvertiseCAs, cert)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	owner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "bytes")
	}))
	owner.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	owner.StartTLS()
	t.Cleanup(owner.Close)

	rdb := redis.NewClient(&redis.Options{Addr: enginetest.StartRedis(t).Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	c := &cluster{rdb: rdb, redis: redisstate.New(logx.Discard(), redisLost, ecrcluster.DefaultRetryInterval, nil)}
	mets, err := newClusterMetrics(prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.startCoordinator(s, logx.Discard(), mets); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v2/team/app/blobs/sha256:1", nil)
	rec := httptest.NewRecorder()
	if err := c.coord.Forward(t.Context(), rec, req, "k", owner.URL+" token"); err != nil {
		t.Fatalf("forward to a replica whose certificate ecr.advertisecas trusts: %v", err)
	}
	if rec.Code != http.StatusOK || rec.Body.String() != "bytes" {
		t.Errorf("forwarded answer %d %q", rec.Code, rec.Body.String())
	}
}
