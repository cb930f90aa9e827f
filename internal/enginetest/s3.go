package enginetest

import (
	"context"
	"net"
	"testing"
)

// GoFakeS3Version is the version of the S3-compatible server the tests
// run; scripts/test.sh installs this one.
const GoFakeS3Version = "v1.2.0"

// S3 is an S3-compatible server (gofakes3) on a loopback port, holding
// its objects in memory (its bolt backend loses concurrent multipart
// uploads).
type S3 struct {
	e *engine
	// Bucket exists from the start.
	Bucket string
}

// StartS3 starts the S3-compatible server with one bucket for the test
// and stops it at cleanup. Any access key is accepted.
func StartS3(t testing.TB, bucket string) *S3 {
	t.Helper()
	e := s3Engine(bucket)
	e.bin = findBinary(t, e.name, s3Install)
	launch(t, e)
	return &S3{e: e, Bucket: bucket}
}

// RunS3 starts the S3-compatible server outside a test (benchmarks);
// Close stops it.
func RunS3(bucket string) (*S3, error) {
	e := s3Engine(bucket)
	var err error
	if e.bin, err = lookBinary(e.name, s3Install); err != nil {
		return nil, err
	}
	if err := run(e); err != nil {
		return nil, err
	}
	return &S3{e: e, Bucket: bucket}, nil
}

// Close stops the server.
func (s *S3) Close() { s.e.stop(false) }

var s3Install = "go install github.com/johannesboyne/gofakes3/cmd/gofakes3@" + GoFakeS3Version

func s3Engine(bucket string) *engine {
	return &engine{
		name: "gofakes3",
		args: func(addr string) []string {
			return []string{"-host", addr, "-backend", "memory", "-initialbucket", bucket}
		},
	}
}

// Addr is the server's host:port.
func (s *S3) Addr() string { return s.e.addr }

// Endpoint is the server's URL, for a driver's regionendpoint.
func (s *S3) Endpoint() string { return "http://" + s.e.addr }

// Stop kills the server (SIGKILL).
func (s *S3) Stop() { s.e.stop(true) }

// Start brings a stopped server back on the same address, with only
// its bucket, empty.
func (s *S3) Start(ctx context.Context) error { return s.e.start(ctx) }

// splitPort returns the host and port of addr.
func splitPort(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}
