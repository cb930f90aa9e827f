package proxytest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Package is the import path of the proxy's command.
const Package = "github.com/ecr-proxy/ecr-proxy/cmd/registry"

// Build compiles the proxy into dir and returns the binary's path.
// extraArgs go to "go build" (for example "-race").
func Build(ctx context.Context, dir string, extraArgs ...string) (string, error) {
	bin := filepath.Join(dir, "registry")
	args := append([]string{"build", "-o", bin}, extraArgs...)
	args = append(args, Package)
	cmd := exec.CommandContext(ctx, "go", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", Package, err, out.String())
	}
	return bin, nil
}

// Config describes one proxy process.
type Config struct {
	// Binary is the path from Build.
	Binary string
	// Args are the command's arguments, such as {"serve", "/path/config.yml"}.
	Args []string
	// Env is the child's whole environment but PATH, as KEY=VALUE.
	Env []string
	// StartTimeout bounds the wait for "listening on"; default 60s.
	StartTimeout time.Duration
	// Launcher, when set, runs the proxy: the command is Launcher
	// followed by Binary and Args, such as
	//   unshare -m sh -c 'mount -t tmpfs -o size=4m tmpfs "$0" && exec "$@"' DIR
	// to give the proxy a small filesystem of its own. The launcher must
	// exec the proxy (keep its process id) and pass signals on.
	Launcher []string
}

// Proxy is a running proxy process.
type Proxy struct {
	// Addr is the address the registry listens on, host:port.
	Addr string
	// DebugAddr is the debug server's address, if it has one.
	DebugAddr string

	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{}
	err  error
}

var (
	listeningRE = regexp.MustCompile(`msg="?listening on ([^ ",]+)`)
	debugRE     = regexp.MustCompile(`debug server listening on ([^ ",]+)`)
)

// Start runs the proxy and waits until it listens. On failure the error
// carries the child's output.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = time.Minute
	}
	argv := append(append(append([]string(nil), cfg.Launcher...), cfg.Binary), cfg.Args...)
	cmd := exec.Command(argv[0], argv[1:]...) //nolint:gosec // the test's own binary, or its launcher
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, cfg.Env...)
	logs := &logBuffer{lines: make(chan string, 1024)}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	p := &Proxy{cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()

	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	for p.Addr == "" {
		select {
		case line := <-logs.lines:
			if m := debugRE.FindStringSubmatch(line); m != nil {
				p.DebugAddr = m[1]
			} else if m := listeningRE.FindStringSubmatch(line); m != nil {
				p.Addr = m[1]
			}
		case <-p.done:
			return nil, fmt.Errorf("proxy exited before listening (%w):\n%s", p.err, logs.String())
		case <-timer.C:
			_ = p.Stop()
			return nil, fmt.Errorf("proxy did not listen within %v:\n%s", cfg.StartTimeout, logs.String())
		case <-ctx.Done():
			_ = p.Stop()
			return nil, ctx.Err()
		}
	}
	return p, nil
}

// URL is the registry's base URL.
func (p *Proxy) URL() string { return "http://" + p.Addr }

// PID is the proxy process's id, for reading its memory from /proc.
func (p *Proxy) PID() int { return p.cmd.Process.Pid }

// Logs returns everything the process printed so far.
func (p *Proxy) Logs() string { return p.logs.String() }

// Stop sends SIGTERM and waits for the process to end (SIGKILL after 30s).
func (p *Proxy) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		return p.err
	}
	return nil
}

// Wait waits for the process to end and returns its error.
func (p *Proxy) Wait() error {
	<-p.done
	return p.err
}

// logBuffer keeps all output and hands complete lines to Start until it
// stops listening for them.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	lines   chan string
	changed chan struct{} // closed and replaced on every write
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		line := string(b.partial[:i])
		b.partial = b.partial[i+1:]
		select {
		case b.lines <- line:
		default: // nobody is waiting for lines any more
		}
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitChange returns the output so far and a channel closed at the next write.
func (b *logBuffer) waitChange() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.buf.String(), b.changed
}

// WaitForLog blocks until the process prints a line containing every one
// of subs, and returns that line; or until ctx ends (after a minute when
// ctx has no deadline) or the process exits.
func (p *Proxy) WaitForLog(ctx context.Context, subs ...string) (string, error) {
	lines, err := p.WaitForLines(ctx, 1, func(l string) bool { return containsAll(l, subs) })
	if err != nil {
		return "", fmt.Errorf("waiting for a log line with %q: %w", subs, err)
	}
	return lines[0], nil
}

// WaitForLines blocks until the process has printed at least n lines
// for which match reports true, and returns the first n of them; or until
// ctx ends (after a minute when ctx has no deadline) or the process exits.
func (p *Proxy) WaitForLines(ctx context.Context, n int, match func(line string) bool) ([]string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	for {
		out, changed := p.logs.waitChange()
		if lines := findLines(out, n, match); len(lines) == n {
			return lines, nil
		}
		select {
		case <-changed:
		case <-p.done:
			out, _ := p.logs.waitChange()
			lines := findLines(out, n, match)
			if len(lines) == n {
				return lines, nil
			}
			return nil, fmt.Errorf("proxy exited after logging %d of the %d lines awaited", len(lines), n)
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of the %d lines awaited logged: %w", len(findLines(out, n, match)), n, ctx.Err())
		}
	}
}

// Log messages that end the proxy's start-up work (see WaitForToken and
// WaitForIdentity); they are logged at level info.
const (
	tokenMintedMsg = "minted ECR token"
	identityMsg    = `msg="AWS identity"`
	noIdentityMsg  = "could not determine the AWS identity"
)

// WaitForToken blocks until the proxy holds an ECR token: it logs
// "minted ECR token" after storing each newly minted one. The proxy mints
// its first token in the background as it starts; until that mint has
// returned, a request may join it or start another, and expiring or
// revoking the tokens minted so far misses the one to come. A caller that
// counts mints, or expires tokens, waits for this first. It needs the
// proxy's log level at info or lower; it fails as WaitForLog does.
func (p *Proxy) WaitForToken(ctx context.Context) error {
	if _, err := p.WaitForLog(ctx, tokenMintedMsg); err != nil {
		return fmt.Errorf("no ECR token minted (is the log level info or lower?): %w", err)
	}
	return nil
}

// WaitForIdentity blocks until the proxy's start-up lookup of its AWS
// identity (STS GetCallerIdentity, in the background) has ended, with
// success or not, and returns the line it logged. After it, that lookup
// sends nothing more to STS. It needs the proxy's log level at info or
// lower.
func (p *Proxy) WaitForIdentity(ctx context.Context) (string, error) {
	lines, err := p.WaitForLines(ctx, 1, func(l string) bool {
		return strings.Contains(l, identityMsg) || strings.Contains(l, noIdentityMsg)
	})
	if err != nil {
		return "", fmt.Errorf("no AWS identity lookup logged (is the log level info or lower?): %w", err)
	}
	return lines[0], nil
}

// findLines returns up to n lines of out for which match reports true.
func findLines(out string, n int, match func(string) bool) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if len(lines) == n {
			break
		}
		if match(l) {
			lines = append(lines, l)
		}
	}
	return lines
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// Lines returns the output so far split into lines.
func (p *Proxy) Lines() []string {
	var out []string
	s := bufio.NewScanner(strings.NewReader(p.Logs()))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		out = append(out, s.Text())
	}
	return out
}

var _ io.Writer = (*logBuffer)(nil)
