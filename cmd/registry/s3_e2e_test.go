package main

import (
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// End-to-end tests of the shared cache in an S3 bucket (distribution's s3
// driver) against a real S3-compatible server (internal/enginetest).

// s3Cache is the configuration of proxies that share one bucket.
type s3Cache struct {
	s3      *enginetest.S3
	emu     *ecrtest.Emulator
	cfgPath string
}

// newS3Cache starts an S3 server and writes the configuration of proxies
// caching in its bucket in front of emu; o adds to it.
func newS3Cache(t *testing.T, emu *ecrtest.Emulator, o proxytest.ConfigOptions) *s3Cache {
	t.Helper()
	c := &s3Cache{s3: enginetest.StartS3(t, "ecr-proxy-cache"), emu: emu}
	o.RemoteURL, o.Region = emu.RegistryURL(), emu.Region()
	o.StorageDriver, o.RootDirectory = s3Driver, "/cache"
	if o.StorageParams == nil {
		o.StorageParams = map[string]string{}
	}
	for k, v := range map[string]string{
		"bucket": c.s3.Bucket, "region": "us-east-1", "regionendpoint": c.s3.Endpoint(),
		"forcepathstyle": "true", "secure": "false", "accesskey": "cache-key", "secretkey": "cache-secret",
	} {
		o.StorageParams[k] = v
	}
	var err error
	if c.cfgPath, err = proxytest.WriteConfig(t.TempDir(), o); err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs a proxy on the shared cache and stops it at cleanup.
func (c *s3Cache) start(t *testing.T) *proxytest.Proxy {
	t.Helper()
	return runProxy(t, []string{"serve", c.cfgPath}, c.emu.Env())
}

// bucket is the cache's bucket, read with distribution's own s3 driver.
func (c *s3Cache) bucket(t *testing.T) storagedriver.StorageDriver {
	t.Helper()
	d, err := factory.Create(t.Context(), s3Driver, map[string]any{
		"bucket": c.s3.Bucket, "region": "us-east-1", "regionendpoint": c.s3.Endpoint(), "rootdirectory": "/cache",
		"forcepathstyle": true, "secure": false, "accesskey": "k", "secretkey": "s",
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestS3CacheSharedAcrossProxies: what one proxy pulled into the bucket,
// another serves without asking ECR for a blob, every byte checked by
// go-containerregistry as it reads.
func TestS3CacheSharedAcrossProxies(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digest := seedImage(t, emu, "team/app:1.0", 3, 3*mib, types.OCIManifestSchema1)
	c := newS3Cache(t, emu, proxytest.ConfigOptions{})

	a := c.start(t)
	mustPull(t, a, "team/app:1.0", digest)
	cold := emu.Count(ecrtest.KindBlobGET)
	if cold != 4 {
		t.Errorf("cold pull: %d ECR blob GETs, want 4 (3 layers and the config)", cold)
	}
	stop(t, a) // drains: the blobs are in the bucket
	// distribution's TTL scheduler, unsafe with several replicas, is off:
	// it would keep its state at the bucket's root.
	if _, err := c.bucket(t).Stat(t.Context(), "/scheduler-state.json"); !isPathNotFound(err) {
		t.Errorf("the bucket's /scheduler-state.json: %v, want none (proxy.ttl 0 on a shared cache)", err)
	}
	if strings.Contains(a.Logs(), "TTL expiration scheduler") {
		t.Error("distribution's TTL scheduler started on a shared cache")
	}

	b := c.start(t)
	mustPull(t, b, "team/app@"+digest, digest)
	if got := emu.Count(ecrtest.KindBlobGET); got != cold {
		t.Errorf("pull through a second proxy on the same bucket: %d ECR blob GETs, want %d (all served from S3)", got, cold)
	}
	// The bucket's traffic is not ECR's: no upstream request but for
	// manifests went out of the second proxy.
	for _, line := range strings.Split(scrape(t, b), "\n") {
		if strings.HasPrefix(line, "ecrproxy_upstream_requests_total{") && !strings.Contains(line, `kind="manifest"`) &&
			!strings.Contains(line, `kind="ping"`) && !strings.HasSuffix(line, " 0") {
			t.Errorf("upstream requests counted for the bucket's traffic: %s", line)
		}
	}
}
