// Package enginetest runs the real engines a scaled-out proxy uses, for
// tests: redis-server (Debian's package) and an S3-compatible server
// written in Go (gofakes3's command, installed with go install at the
// version scripts/test.sh pins). Each runs as a child process on an
// ephemeral loopback port with its data in a temporary directory, and is
// stopped by its PID at cleanup; Stop and Start in between let a test
// take an engine away and bring it back on the same address.
//
// A missing binary fails the test with the command that installs it:
// the tests that need an engine run in CI, never skipped silently.
// RunRedis and RunS3 start the same engines outside a test, for the
// benchmarks.
package enginetest
