package main

import (
	"net/http"
	"net/url"
	"strings"
)

// cacheBypass sends the requests of the cache's storage driver (the s3
// driver, whose SDK uses http.DefaultClient and so http.DefaultTransport)
// to the plain transport, and everything else to ECR's. Without it the
// bucket's traffic would be timed, counted and logged as ECR's (its
// metrics, the request log's upstream figures), and reach the bucket
// through the upstream resolver.
type cacheBypass struct {
	ecr, plain http.RoundTripper
	isCache    func(*url.URL) bool
}

func (c cacheBypass) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.isCache(req.URL) {
		return c.plain.RoundTrip(req)
	}
	return c.ecr.RoundTrip(req)
}

// bypassCache wraps ecr (what becomes http.DefaultTransport) so that the
// requests to the s3 cache bucket go through plain instead; for another
// driver it returns ecr.
func bypassCache(s *settings, ecr, plain http.RoundTripper) http.RoundTripper {
	if s.dist.Storage.Type() != s3Driver {
		return ecr
	}
	p := s.dist.Storage.Parameters()
	bucket, _ := p["bucket"].(string)
	endpoint := ""
	if v, ok := p["regionendpoint"].(string); ok && v != "" {
		if u, err := url.Parse(v); err == nil {
			endpoint = strings.ToLower(u.Host)
		}
	}
	return cacheBypass{ecr: ecr, plain: plain, isCache: func(u *url.URL) bool { return bucketRequest(u, bucket, endpoint) }}
}

// bucketRequest reports whether u addresses bucket: at its endpoint (an
// S3-compatible store), or on AWS, virtual-hosted (bucket.s3….amazonaws.com)
// or path-style (s3….amazonaws.com/bucket/…). ECR's own layer buckets,
// where its blob redirects lead, have other names.
func bucketRequest(u *url.URL, bucket, endpoint string) bool {
	host := strings.ToLower(u.Host)
	if endpoint != "" {
		return host == endpoint
	}
	if bucket == "" {
		return false
	}
	name := strings.ToLower(u.Hostname())
	if !strings.HasSuffix(name, ".amazonaws.com") && !strings.HasSuffix(name, ".amazonaws.com.cn") {
		return false
	}
	if strings.HasPrefix(name, strings.ToLower(bucket)+".s3") {
		return true
	}
	return strings.HasPrefix(name, "s3") && (u.Path == "/"+bucket || strings.HasPrefix(u.Path, "/"+bucket+"/"))
}
