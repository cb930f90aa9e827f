package enginetest

import (
	"context"
	"testing"
)

// Redis is a redis-server child process on a loopback port, without
// persistence.
type Redis struct {
	e *engine
}

// StartRedis starts redis-server for the test and stops it at cleanup.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	dir := t.TempDir()
	e := &engine{
		name: "redis-server",
		bin:  findBinary(t, "redis-server", "apt-get install redis-server"),
		args: func(addr string) []string {
			_, port := splitPort(addr)
			return []string{"--bind", "127.0.0.1", "--port", port, "--dir", dir,
				"--save", "", "--appendonly", "no", "--protected-mode", "no"}
		},
	}
	launch(t, e)
	return &Redis{e: e}
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return r.e.addr }

// Stop kills the server (SIGKILL: as a crash or a lost node looks).
func (r *Redis) Stop() { r.e.stop(true) }

// Start brings a stopped server back on the same address, empty.
func (r *Redis) Start(ctx context.Context) error { return r.e.start(ctx) }
