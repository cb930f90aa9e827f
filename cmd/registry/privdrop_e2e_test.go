//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rootOwnedSeedSetup is what docker leaves for the seed's `docker run`
// line: a cache directory created by root (here with an entry a previous
// run as root left) and a TLS key readable by root alone. Its directories
// are searchable by everyone, as on a host.
func rootOwnedSeedSetup(t *testing.T) (cacheDir, cert, key string) {
	t.Helper()
	base, err := os.MkdirTemp("", "ecr-proxy-privdrop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	cacheDir = filepath.Join(base, "local-storage", "cache")
	if err := os.MkdirAll(filepath.Join(cacheDir, "docker", "registry", "v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	cert, key = writeCertPair(t, base, "proxy") // both 0600, root's
	if err := os.Chmod(cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return cacheDir, cert, key
}

// seedLineEnv is the seed's variables, with ECR and AWS unreachable
// (closed loopback ports): the proxy starts anyway. As in the image, a
// serve started as root drops its privileges.
func seedLineEnv(t *testing.T, port, cacheDir, cert, key string) []string {
	return append(hermeticEnv(t),
		"PATH="+os.Getenv("PATH"),
		dropPrivilegesEnv+"=true",
		"PORT="+port,
		"ECR=http://127.0.0.1:9",
		"AWS_REGION=eu-central-1",
		"AWS_ENDPOINT_URL=http://127.0.0.1:9",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ACCESS_KEY_ID=privdrop",
		"AWS_SECRET_ACCESS_KEY=privdrop",
		"CACHE_DIR="+cacheDir,
		"CACHE_MAX_SIZE=100g",
		"ENABLE_SSL=true",
		"SSL_KEY="+key,
		"SSL_CERTIFICATE="+cert,
	)
}

// lockedLog is the output of a process, written by the goroutine that
// reads it and read by the test.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe starts `registry serve` with env and waits for its "listening
// on" line; it is stopped at cleanup.
func startServe(t *testing.T, env []string, cred *syscall.Credential) (*exec.Cmd, *lockedLog) {
	t.Helper()
	cmd := exec.Command(proxyBinary, "serve") //nolint:gosec // the test's own binary
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{}
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if !found && strings.Contains(sc.Text(), "listening on") {
				found = true
				listening <- true
			}
		}
		if !found {
			listening <- false
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("proxy output:\n%s", logs.String())
		}
	})
	select {
	case ok := <-listening:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("serve exited before listening:\n%s", logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("serve did not listen within a minute:\n%s", logs.String())
	}
	return cmd, logs
}

// TestServeStartedAsRootDropsPrivileges runs the seed's line as root,
// against a root-owned cache directory and a root-only key: the proxy
// takes the directory, reads the key, and serves as 65532 with no
// capability, on every thread.
func TestServeStartedAsRootDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, as `docker run` starts the image")
	}
	cacheDir, cert, key := rootOwnedSeedSetup(t)
	port := freePort(t)
	// AWS credentials in a root-only file, as when ~/.aws is mounted.
	creds := filepath.Join(filepath.Dir(cert), "credentials")
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id = privdrop\naws_secret_access_key = privdrop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := replaceEnv(seedLineEnv(t, port, cacheDir, cert, key), "AWS_SHARED_CREDENTIALS_FILE", creds)
	cmd, logs := startServe(t, env, nil)

	status, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", cmd.Process.Pid))
	if err != nil || len(status) == 0 {
		t.Fatalf("threads of %d: %v", cmd.Process.Pid, err)
	}
	want := map[string]*regexp.Regexp{
		"Uid":    regexp.MustCompile(`^65532\s+65532\s+65532\s+65532$`),
		"Gid":    regexp.MustCompile(`^65532\s+65532\s+65532\s+65532$`),
		"Groups": regexp.MustCompile(`^$`),
		"CapPrm": regexp.MustCompile(`^0+$`),
		"CapEff": regexp.MustCompile(`^0+$`),
	}
	for _, path := range status {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // a thread that ended
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			if re, ok := want[k]; ok && !re.MatchString(strings.TrimSpace(v)) {
				t.Errorf("%s: %s:%s", path, k, v)
			}
		}
	}

	// It serves TLS with the root-only key, and caches as 65532.
	client := tlsClient(t, cert)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz over TLS: %s", resp.Status)
	}
	err = filepath.Walk(cacheDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != unprivilegedUID || st.Gid != unprivilegedGID {
			t.Errorf("%s owned by %d:%d, want 65532:65532", p, st.Uid, st.Gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, "ecr-proxy-spool")); err != nil {
		t.Errorf("no spool directory in the cache: %v", err)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the key's owner or mode changed: %v %v", fi.Mode(), err)
	}
	for _, s := range []string{"now running as UID 65532", "SSL_KEY " + key + " is not readable by UID 65532",
		"AWS_SHARED_CREDENTIALS_FILE " + creds + " is not readable by UID 65532"} {
		if !strings.Contains(logs.String(), s) {
			t.Errorf("log does not say %q", s)
		}
	}
}

// TestServeAsUserExplainsUnwritableCache starts serve as 65532 (docker
// run --user, or an image with USER) on the root-owned directory: it
// stops with a message that says what to do.
func TestServeAsUserExplainsUnwritableCache(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to start the proxy as another user")
	}
	cacheDir, cert, _ := rootOwnedSeedSetup(t)
	// A copy of the binary that user may run (the test's is in a private
	// temporary directory).
	bin := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(cacheDir))), "registry")
	b, err := os.ReadFile(proxyBinary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil { //nolint:gosec // an executable, for another user
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve") //nolint:gosec // the test's own binary
	// The key readable, so that the cache directory is what fails.
	cmd.Env = seedLineEnv(t, freePort(t), cacheDir, cert, cert)
	cmd.Env = replaceEnv(cmd.Env, "ENABLE_SSL", "false")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: unprivilegedUID, Gid: unprivilegedGID}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started on a cache directory it cannot write:\n%s", out)
	}
	if _, ok := err.(*exec.ExitError); !ok { //nolint:errorlint // CombinedOutput returns it unwrapped
		t.Fatalf("serve as UID 65532: %v", err)
	}
	for _, s := range []string{"cache directory " + cacheDir, "permission denied", "runs as UID 65532", "start the container as root", "chown -R 65532:65532"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("output does not say %q:\n%s", s, out)
		}
	}
}
