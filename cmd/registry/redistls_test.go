package main

import (
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"

	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
)

// TestRedisTLS: redis.tls is read as distribution reads it: with
// rootcas, the client trusts them and reaches a redis-server that speaks
// TLS only; a file it cannot read, or a certificate without its key, is
// an error naming the key and the value, at the start.
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "redis")
	r := enginetest.StartRedisTLS(t, cert, key)

	rdb, err := newRedisClient(configuration.Redis{
		Options: configuration.RedisOptions{Addrs: []string{r.Addr()}},
		TLS:     configuration.RedisTLSOptions{RootCAs: []string{cert}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close() //nolint:errcheck // test client
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Errorf("PING over TLS with redis.tls.rootcas naming the server's CA: %v", err)
	}
	plain, err := newRedisClient(configuration.Redis{Options: configuration.RedisOptions{Addrs: []string{r.Addr()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close() //nolint:errcheck // test client
	if plain.Ping(t.Context()).Err() == nil {
		t.Error("PING without TLS answered: the server does not require TLS, the test proves nothing")
	}

	base := "version: 0.1\nstorage:\n  s3: {bucket: b, region: eu-west-1}\nproxy:\n  remoteurl: " + seedECR + "\necr:\n  push: disabled\nredis:\n  addrs: [r:6379]\n"
	for _, tc := range []struct{ name, tls, want string }{
		{"missing root CA file", "  tls:\n    rootcas: [" + dir + "/none.pem]\n", `redis.tls.rootcas[0] "` + dir + `/none.pem"`},
		{"not a certificate", "  tls:\n    rootcas: [" + key + "]\n", `redis.tls.rootcas[0] "` + key + `": no PEM certificate`},
		{"certificate without key", "  tls:\n    certificate: " + cert + "\n", `redis.tls.certificate "` + cert + `" and redis.tls.key "" go together`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSettings(writeFile(t, base+tc.tls), envMap())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadSettings: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
