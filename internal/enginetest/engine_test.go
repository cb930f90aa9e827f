package enginetest_test

import (
	"context"
	"errors"
	"flag"
	"reflect"
	"slices"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"
	"github.com/redis/go-redis/v9"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
)

// S3Parameters are the s3-aws driver's parameters for srv.
func s3Parameters(srv *enginetest.S3) map[string]any {
	return map[string]any{
		"bucket": srv.Bucket, "region": "us-east-1", "regionendpoint": srv.Endpoint(),
		"forcepathstyle": true, "secure": false, "accesskey": "test", "secretkey": "test",
		"rootdirectory": "/registry",
	}
}

// TestS3DriverSuite runs distribution's storage-driver conformance suite
// against its s3-aws driver on the test S3 server: multipart uploads,
// resumed writers, listing, moves, deletes and presigned URLs, which the
// shared cache relies on.
func TestS3DriverSuite(t *testing.T) {
	ecrtest.ClearAWSEnv(t) // the driver's SDK reads AWS_* and ~/.aws
	srv := enginetest.StartS3(t, "cache")
	// gofakes3 answers a zero-length object sent without a Content-Length
	// 411 (real S3 accepts it): the one case of the suite left out.
	onlyTests(t, reflect.TypeFor[*testsuites.DriverSuite](), "TestWriteZeroByteStreamThenAppend")
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) {
		return factory.Create(context.Background(), "s3aws", s3Parameters(srv))
	}, false)
}

// onlyTests makes testify run every Test method of suite but those
// skipped, through its -testify.m flag, until the test ends.
func onlyTests(t *testing.T, suite reflect.Type, skipped ...string) {
	t.Helper()
	var names []string
	for i := range suite.NumMethod() {
		if n := suite.Method(i).Name; strings.HasPrefix(n, "Test") && !slices.Contains(skipped, n) {
			names = append(names, n)
		}
	}
	f := flag.Lookup("testify.m")
	if f == nil {
		t.Fatal("testify's -testify.m flag is not registered")
	}
	old := f.Value.String()
	if err := f.Value.Set("^(" + strings.Join(names, "|") + ")$"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Value.Set(old) })
}

// TestRedisStopStart proves the Redis engine answers, goes away on Stop
// and comes back, empty, on the same address.
func TestRedisStopStart(t *testing.T) {
	srv := enginetest.StartRedis(t)
	ctx := t.Context()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	srv.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping answered after Stop")
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "k").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("get after restart = %q, %v; want redis.Nil (no persistence)", got, err)
	}
}
