package main

import (
	"net/url"
	"testing"
)

func TestBucketRequest(t *testing.T) {
	for _, tc := range []struct {
		url, endpoint string
		want          bool
	}{
		{"https://team-ecr-cache.s3.eu-west-1.amazonaws.com/ecr-proxy/docker/registry/v2/blobs/x", "", true},
		{"https://s3.eu-west-1.amazonaws.com/team-ecr-cache/ecr-proxy/docker/x", "", true},
		{"https://team-ecr-cache.s3.amazonaws.com/x", "", true},
		// ECR's blob redirects: its own layer bucket.
		{"https://prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com/abc/def", "", false},
		{"https://s3.eu-west-1.amazonaws.com/prod-eu-west-1-starport-layer-bucket/abc", "", false},
		{"https://s3.eu-west-1.amazonaws.com/team-ecr-cache-other/abc", "", false},
		{"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/", "", false},
		{"http://minio.internal:9000/team-ecr-cache/x", "minio.internal:9000", true},
		{"https://prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com/abc", "minio.internal:9000", false},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := bucketRequest(u, "team-ecr-cache", tc.endpoint); got != tc.want {
			t.Errorf("bucketRequest(%s, endpoint %q) = %v, want %v", tc.url, tc.endpoint, got, tc.want)
		}
	}
}
