package enginetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long an engine may take to accept connections.
const startTimeout = 30 * time.Second

// engine is one child process serving on a fixed loopback address, which
// stays the same across Stop and Start.
type engine struct {
	name string
	addr string
	args func(addr string) []string
	bin  string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}

	outMu sync.Mutex // guards out
	out   bytes.Buffer
}

// findBinary returns the path of name, looked up in PATH and then in
// $(go env GOPATH)/bin, or fails t with how to install it.
func findBinary(t testing.TB, name, install string) string {
	t.Helper()
	p, err := lookBinary(name, install)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("pick a port: %w", err)
	}
	return addr, nil
}

// start runs the engine and waits until its address accepts connections.
func (e *engine) start(ctx context.Context) error {
	e.mu.Lock()
	if e.cmd != nil {
		e.mu.Unlock()
		return fmt.Errorf("%s is already running", e.name)
	}
	cmd := exec.Command(e.bin, e.args(e.addr)...) //nolint:gosec // the test engine's own binary
	w := &lockedWriter{w: &e.out, mu: &e.outMu}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		e.mu.Unlock()
		return fmt.Errorf("start %s: %w", e.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	e.cmd, e.done = cmd, done
	e.mu.Unlock()
	if err := waitListening(ctx, e.addr, done); err != nil {
		e.stop(true)
		return fmt.Errorf("%s on %s: %w\n%s", e.name, e.addr, err, e.output())
	}
	return nil
}

// waitListening polls addr until it accepts a connection, the process
// ends, or the start timeout passes.
func waitListening(ctx context.Context, addr string, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-done:
			return errors.New("exited before listening")
		case <-ctx.Done():
			return fmt.Errorf("not listening: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// stop kills the engine (SIGKILL when hard, else SIGTERM) and waits for
// it to end. Stopping a stopped engine does nothing.
func (e *engine) stop(hard bool) {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	sig := syscall.SIGTERM
	if hard {
		sig = syscall.SIGKILL
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// output is what the engine printed so far.
func (e *engine) output() string {
	e.outMu.Lock()
	defer e.outMu.Unlock()
	return e.out.String()
}

// launch starts e for the test (see run) and stops it at cleanup.
func launch(t testing.TB, e *engine) {
	t.Helper()
	if err := run(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.stop(false)
		if t.Failed() {
			t.Logf("%s output:\n%s", e.name, e.output())
		}
	})
}

// run picks a free loopback port and starts e there, trying another port
// if the chosen one was taken meanwhile.
func run(e *engine) error {
	var err error
	for range 3 {
		if e.addr, err = freeAddr(); err != nil {
			return err
		}
		if err = e.start(context.Background()); err == nil {
			return nil
		}
	}
	return err
}

// lookBinary is findBinary's search, with an error for a missing binary.
func lookBinary(name, install string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	if gopath != "" {
		p := filepath.Join(gopath, "bin", name)
		if _, err := os.Stat(p); err == nil { //nolint:gosec // the caller's own GOPATH
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (not in PATH nor in $GOPATH/bin): %s (scripts/test.sh does this)", name, install)
}

// lockedWriter serialises the child's writes with output's reads.
type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
