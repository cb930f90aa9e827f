package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestS3Variables(t *testing.T) {
	s, err := loadSettings("", envMap("ECR", seedECR, "PORT", "5000",
		"CACHE_S3_BUCKET", "team-cache", "CACHE_S3_ENDPOINT", "http://minio.internal:9000",
		"CACHE_S3_PREFIX", "proxy/", "CACHE_S3_FORCE_PATH_STYLE", "true",
		"CACHE_S3_ACCESS_KEY_ID", "AKIDEXAMPLE", "CACHE_S3_SECRET_ACCESS_KEY", "not-a-secret"))
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	if got := s.dist.Storage.Type(); got != s3Driver {
		t.Fatalf("storage driver %q, want %q", got, s3Driver)
	}
	want := map[string]any{
		"bucket": "team-cache", "region": "eu-central-1", "regionendpoint": "http://minio.internal:9000", "secure": false,
		"rootdirectory": "/proxy", "forcepathstyle": true, "accesskey": "AKIDEXAMPLE", "secretkey": "not-a-secret",
	}
	if diff := cmp.Diff(want, map[string]any(s.dist.Storage.Parameters())); diff != "" {
		t.Errorf("storage.s3 (-want +got):\n%s", diff)
	}
	if _, ok := s.dist.Storage[lruDriver]; ok {
		t.Error("the built-in lrufilesystem cache is still configured next to s3")
	}
	if s.ecr.SpoolDir != "/cache/ecr-proxy-spool" {
		t.Errorf("ecr.spooldir %q, want the former cache directory's /cache/ecr-proxy-spool", s.ecr.SpoolDir)
	}
	s, err = loadSettings("", envMap("ECR", seedECR, "PORT", "5000", "CACHE_S3_BUCKET", "b", "SPOOL_DIR", "/tmp/spool"))
	if err != nil || s.ecr.SpoolDir != "/tmp/spool" {
		t.Errorf("SPOOL_DIR=/tmp/spool: ecr.spooldir %q, %v", s.ecr.SpoolDir, err)
	}
}

func TestS3VariablesRefused(t *testing.T) {
	base := []string{"ECR", seedECR, "PORT", "5000"}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"endpoint without a bucket", []string{"CACHE_S3_ENDPOINT", "http://minio:9000"}, "CACHE_S3_ENDPOINT needs CACHE_S3_BUCKET"},
		{"endpoint with a path", []string{"CACHE_S3_BUCKET", "b", "CACHE_S3_ENDPOINT", "http://minio:9000/x"}, `CACHE_S3_ENDPOINT="http://minio:9000/x"`},
		{"access key alone", []string{"CACHE_S3_BUCKET", "b", "CACHE_S3_ACCESS_KEY_ID", "AKID"}, "go together"},
		{"path style not a boolean", []string{"CACHE_S3_BUCKET", "b", "CACHE_S3_FORCE_PATH_STYLE", "maybe"}, `CACHE_S3_FORCE_PATH_STYLE="maybe"`},
		{"cache dir with a bucket", []string{"CACHE_S3_BUCKET", "b", "CACHE_DIR", "/cache"}, "CACHE_DIR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSettings("", envMap(append(base, tc.env...)...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadSettings: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestS3KeysChecked(t *testing.T) {
	cfg := writeFile(t, "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    regoin: eu-west-1\nproxy:\n  remoteurl: "+seedECR+"\necr:\n  push: disabled\n")
	_, err := loadSettings(cfg, envMap())
	if err == nil || !strings.Contains(err.Error(), `unknown key storage.s3.regoin: did you mean "region"?`) {
		t.Errorf("loadSettings: %v, want the misspelt key named", err)
	}
}

func TestClusterBoundVariables(t *testing.T) {
	s, err := loadSettings("", envMap("ECR", seedECR, "PORT", "5000",
		"CACHE_S3_BUCKET", "team-cache", "REDIS_ADDR", "redis-0:6379, redis-1:6379", "CACHE_MAX_SIZE", "500g"))
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	if diff := cmp.Diff([]string{"redis-0:6379", "redis-1:6379"}, s.dist.Redis.Options.Addrs); diff != "" {
		t.Errorf("redis.addrs (-want +got):\n%s", diff)
	}
	opts := redisLRUOptions(s.dist)
	if len(opts) != 1 {
		t.Fatalf("%d redislru middlewares, want 1", len(opts))
	}
	want := map[string]any{"maxsize": "500g", "prefix": "ecr-proxy:s3://team-cache/"}
	if diff := cmp.Diff(want, map[string]any(opts[0])); diff != "" {
		t.Errorf("redislru options (-want +got):\n%s", diff)
	}
	if got := s.startupFields()["cache_max"]; !strings.HasPrefix(fmt.Sprint(got), "500g") {
		t.Errorf("start-up log cache_max=%v, want the cluster-wide bound 500g", got)
	}

	for _, addr := range []string{"redis", "redis://redis:6379", ":6379", "redis:port"} {
		_, err := loadSettings("", envMap("ECR", seedECR, "PORT", "5000", "CACHE_S3_BUCKET", "team-cache", "REDIS_ADDR", "r:6379,"+addr))
		if want := fmt.Sprintf("redis.addrs[1] %q (REDIS_ADDR): want host:port", addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("REDIS_ADDR=r:6379,%s: %v, want an error containing %q", addr, err, want)
		}
	}

	_, err = loadSettings("", envMap("ECR", seedECR, "PORT", "5000", "CACHE_S3_BUCKET", "team-cache", "CACHE_MAX_SIZE", "500g"))
	if err == nil || !strings.Contains(err.Error(), "set REDIS_ADDR") {
		t.Errorf("CACHE_MAX_SIZE over S3 without Redis: %v, want an error asking for REDIS_ADDR", err)
	}
}

func TestRedisLRUConfigChecked(t *testing.T) {
	base := "version: 0.1\nstorage:\n  s3: {bucket: b, region: eu-west-1}\nproxy:\n  remoteurl: " + seedECR + "\necr:\n  push: disabled\n"
	for _, tc := range []struct{ name, extra, want string }{
		{"no redis", "middleware:\n  storage:\n    - name: redislru\n      options: {maxsize: 1g}\n", "set redis.addrs"},
		{"no maxsize", "redis:\n  addrs: [r:6379]\nmiddleware:\n  storage:\n    - name: redislru\n", "option maxsize is required"},
		{"misspelt option", "redis:\n  addrs: [r:6379]\nmiddleware:\n  storage:\n    - name: redislru\n      options: {maxsize: 1g, lowwatr: 0.5}\n", "unknown option lowwatr"},
		{"local cache", "redis:\n  addrs: [r:6379]\nmiddleware:\n  storage:\n    - name: redislru\n      options: {maxsize: 1g}\n", "storage.inmemory is local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			if tc.name == "local cache" {
				cfg = strings.Replace(base, "s3: {bucket: b, region: eu-west-1}", "inmemory: {}", 1)
			}
			_, err := loadSettings(writeFile(t, cfg+tc.extra), envMap())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "middleware.storage[0]") {
				t.Errorf("loadSettings: %v, want an error naming middleware.storage[0] and containing %q", err, tc.want)
			}
		})
	}
}

// TestClusterExampleEnvironment: the variables of
// deploy/kubernetes-cluster/deployment.yaml configure a replica.
func TestClusterExampleEnvironment(t *testing.T) {
	s, err := loadSettings("", envMap("ECR", "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com", "PORT", "5000",
		"CACHE_S3_BUCKET", "team-ecr-cache", "CACHE_S3_PREFIX", "ecr-proxy", "CACHE_MAX_SIZE", "500g",
		"REDIS_ADDR", "ecr-proxy-redis:6379", "ADVERTISE_URL", "http://10.1.2.3:5000"))
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	if s.ecr.Advertise != "http://10.1.2.3:5000" || s.dist.Storage.Type() != s3Driver || len(redisLRUOptions(s.dist)) != 1 {
		t.Errorf("advertise %q, driver %q, %d redislru middlewares; want the URL, s3 and one", s.ecr.Advertise, s.dist.Storage.Type(), len(redisLRUOptions(s.dist)))
	}
	if d, _ := s.dist.Storage["redirect"]["disable"].(bool); !d {
		t.Error("redirects to the bucket are on by default")
	}
	if _, err := loadSettings("", envMap("ECR", seedECR, "PORT", "5000", "ADVERTISE_URL", "10.1.2.3:5000")); err == nil || !strings.Contains(err.Error(), "ecr.advertise") {
		t.Errorf("ADVERTISE_URL without a scheme: %v, want an error naming ecr.advertise", err)
	}
}

// TestSharedCacheTTLOff: distribution's TTL scheduler keeps its state in
// one file of the store that every replica overwrites, so with a shared
// cache proxy.ttl defaults to 0 (no scheduler) and a TTL above 0 is
// refused, naming the key and the value; a local cache keeps the default.
func TestSharedCacheTTLOff(t *testing.T) {
	s, err := loadSettings("", envMap("ECR", seedECR, "PORT", "5000", "CACHE_S3_BUCKET", "team-cache"))
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	if ttl := s.dist.Proxy.TTL; ttl == nil || *ttl != 0 {
		t.Errorf("proxy.ttl %v with CACHE_S3_BUCKET, want 0: the TTL scheduler off", ttl)
	}
	if !strings.Contains(strings.Join(s.notes, "\n"), "proxy.ttl: 0") {
		t.Errorf("notes %q, want one saying proxy.ttl is 0", s.notes)
	}
	s, err = loadSettings("", envMap("ECR", seedECR, "PORT", "5000"))
	if err != nil || s.dist.Proxy.TTL != nil {
		t.Errorf("local cache: proxy.ttl %v, %v; want it unset (distribution's default)", s.dist.Proxy.TTL, err)
	}

	base := "version: 0.1\nstorage:\n  s3: {bucket: b, region: eu-west-1}\nproxy:\n  remoteurl: " + seedECR + "\n"
	if _, err := loadSettings(writeFile(t, base+"  ttl: 168h\necr:\n  push: disabled\n"), envMap()); err == nil ||
		!strings.Contains(err.Error(), `proxy.ttl "168h0m0s" with the shared storage.s3 cache`) {
		t.Errorf("proxy.ttl: 168h over s3: %v, want it refused naming the key and the value", err)
	}
	s, err = loadSettings(writeFile(t, base+"  ttl: 0s\necr:\n  push: disabled\n"), envMap())
	if err != nil || s.dist.Proxy.TTL == nil || *s.dist.Proxy.TTL != 0 {
		t.Errorf("proxy.ttl: 0s over s3: %v, %v; want it accepted", s, err)
	}
}
