package enginetest

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// Redis is a redis-server child process on a loopback port, without
// persistence.
type Redis struct {
	e *engine
}

// StartRedis starts redis-server for the test and stops it at cleanup;
// extra are more of its arguments (--requirepass secret).
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	e := redisEngine(t.TempDir(), extra...)
	e.bin = findBinary(t, e.name, redisInstall)
	launch(t, e)
	return &Redis{e: e}
}

// StartRedisTLS starts redis-server for the test serving TLS only, with
// the server certificate certFile and its key keyFile (clients are not
// asked for certificates), and stops it at cleanup.
func StartRedisTLS(t testing.TB, certFile, keyFile string) *Redis {
	t.Helper()
	e := redisEngine(t.TempDir())
	plain := e.args
	e.args = func(addr string) []string {
		_, port := splitPort(addr)
		return append(plain(addr), "--port", "0", "--tls-port", port,
			"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-auth-clients", "no")
	}
	e.bin = findBinary(t, e.name, redisInstall)
	launch(t, e)
	return &Redis{e: e}
}

// RunRedis starts redis-server outside a test (benchmarks), with its
// files in dir; Close stops it.
func RunRedis(dir string) (*Redis, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("redis-server directory: %w", err)
	}
	e := redisEngine(dir)
	var err error
	if e.bin, err = lookBinary(e.name, redisInstall); err != nil {
		return nil, err
	}
	if err := run(e); err != nil {
		return nil, err
	}
	return &Redis{e: e}, nil
}

// Close stops the server.
func (r *Redis) Close() { r.e.stop(false) }

const redisInstall = "apt-get install redis-server"

func redisEngine(dir string, extra ...string) *engine {
	return &engine{
		name: "redis-server",
		args: func(addr string) []string {
			_, port := splitPort(addr)
			return append([]string{"--bind", "127.0.0.1", "--port", port, "--dir", dir,
				"--save", "", "--appendonly", "no", "--protected-mode", "no"}, extra...)
		},
	}
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return r.e.addr }

// Stop kills the server (SIGKILL: as a crash or a lost node looks).
func (r *Redis) Stop() { r.e.stop(true) }

// Start brings a stopped server back on the same address, empty.
func (r *Redis) Start(ctx context.Context) error { return r.e.start(ctx) }
