package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// proxyBinary is the proxy built once for the package's tests; craneBinary
// is go-containerregistry's crane CLI, a real client.
var proxyBinary, craneBinary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// The emulator's distribution logs through logrus' global logger.
	logrus.SetOutput(io.Discard)
	dir, err := os.MkdirTemp("", "ecr-proxy-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	proxyBinary, err = proxytest.Build(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	craneBinary = filepath.Join(dir, "crane")
	if out, err := exec.Command("go", "build", "-o", craneBinary, "github.com/google/go-containerregistry/cmd/crane").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build crane: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// hermeticEnv is the base environment of a proxy child: no credentials,
// no shared files, no instance metadata, traffic to loopback only.
func hermeticEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	return []string{
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-credentials"),
		"OTEL_TRACES_EXPORTER=none",
	}
}

// proxyOpts describe one proxy started by startProxy.
type proxyOpts struct {
	env      []string // replaces emu.Env() when set
	cacheDir string   // default: a new temp dir
	config   proxytest.ConfigOptions
	// noToken says the proxy cannot mint at start (AWS unreachable):
	// startProxy does not wait for its first ECR token.
	noToken bool
}

// startProxy runs the proxy in front of emu, waits until it has settled
// (see settle), and stops it at cleanup.
func startProxy(t *testing.T, emu *ecrtest.Emulator, o proxyOpts) *proxytest.Proxy {
	t.Helper()
	if o.cacheDir == "" {
		o.cacheDir = t.TempDir()
	}
	c := o.config
	c.RemoteURL = emu.RegistryURL()
	c.RootDirectory = o.cacheDir
	if c.Region == "" {
		c.Region = emu.Region()
	}
	cfgPath, err := proxytest.WriteConfig(t.TempDir(), c)
	if err != nil {
		t.Fatal(err)
	}
	env := o.env
	if env == nil {
		env = emu.Env()
	}
	if o.noToken {
		p, err := startProcess(t, []string{"serve", cfgPath}, env)
		if err != nil {
			t.Fatal(err)
		}
		settle(t, p, false)
		return p
	}
	return runProxy(t, []string{"serve", cfgPath}, env)
}

// runProxy starts the proxy binary with args and the hermetic environment
// plus env, waits until it has settled with its first ECR token (see
// settle), and stops it at cleanup, showing its output if the test failed.
func runProxy(t *testing.T, args, env []string) *proxytest.Proxy {
	t.Helper()
	p, err := startProcess(t, args, env)
	if err != nil {
		t.Fatal(err)
	}
	settle(t, p, true)
	return p
}

// startProcess starts the proxy binary with args and the hermetic
// environment plus env, and waits until it listens. Once it runs, it is
// stopped at cleanup, its output shown if the test failed.
func startProcess(t *testing.T, args, env []string) (*proxytest.Proxy, error) {
	t.Helper()
	p, err := proxytest.Start(t.Context(), proxytest.Config{
		Binary: proxyBinary,
		Args:   args,
		Env:    append(hermeticEnv(t), env...),
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop proxy: %v", err)
		}
		if t.Failed() {
			t.Logf("proxy output:\n%s", p.Logs())
		}
	})
	return p, nil
}

// settle waits until the work the proxy starts in the background when it
// starts is over: the lookup of its AWS identity has ended (STS answered
// or not) and, with token, its first ECR token is minted and held. Until
// then that work may still reach the emulator, so that its counts
// (KindTokenMint, KindCallerIdentity, everything after a ResetCounts) and
// the tokens ExpireTokens reaches would depend on timing; a request could
// also join that first mint, or start a second one. Every test therefore
// starts from a settled proxy.
func settle(t *testing.T, p *proxytest.Proxy, token bool) {
	t.Helper()
	if token {
		if err := p.WaitForToken(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.WaitForIdentity(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// seedImage puts a random image of the given media type into emu and
// returns its digest.
func seedImage(t *testing.T, emu *ecrtest.Emulator, ref string, layers int, size int64, mt types.MediaType) string {
	t.Helper()
	d, _ := seedImageContent(t, emu, ref, layers, size, mt)
	return d
}

// seedImageContent is seedImage returning also what a pull must return.
func seedImageContent(t *testing.T, emu *ecrtest.Emulator, ref string, layers int, size int64, mt types.MediaType) (string, pulled) {
	t.Helper()
	img, err := ecrtest.RandomImage(layers, size, mt)
	if err != nil {
		t.Fatal(err)
	}
	want, err := readImage(img)
	if err != nil {
		t.Fatal(err)
	}
	d, err := emu.Seed(t.Context(), ref, img)
	if err != nil {
		t.Fatalf("seed %s: %v", ref, err)
	}
	return d, want
}

// pulled is what a pull through the proxy returned.
type pulled struct {
	digest   string
	manifest []byte
	layers   []string // digests of the layers read, in order
}

// pullImage pulls ref ("repo:tag" or "repo@digest") from the proxy with
// go-containerregistry, reading every layer; go-containerregistry checks
// each blob's digest as it reads.
func pullImage(ctx context.Context, p *proxytest.Proxy, ref string) (pulled, error) {
	r, err := name.ParseReference(p.Addr+"/"+ref, name.Insecure)
	if err != nil {
		return pulled{}, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return pulled{}, err
	}
	return readImage(img)
}

func readImage(img v1.Image) (pulled, error) {
	var out pulled
	d, err := img.Digest()
	if err != nil {
		return out, err
	}
	out.digest = d.String()
	if out.manifest, err = img.RawManifest(); err != nil {
		return out, err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return out, fmt.Errorf("config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return out, err
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			return out, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return out, fmt.Errorf("layer %s: %w", ld, err)
		}
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return out, fmt.Errorf("layer %s: %w", ld, err)
		}
		out.layers = append(out.layers, ld.String())
	}
	return out, nil
}

// mustPull pulls and checks the digest.
func mustPull(t *testing.T, p *proxytest.Proxy, ref, wantDigest string) pulled {
	t.Helper()
	got, err := pullImage(t.Context(), p, ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if got.digest != wantDigest {
		t.Fatalf("pull %s: digest %s, want %s", ref, got.digest, wantDigest)
	}
	return got
}

// pollUntil calls cond every 20 ms until it reports true, and reports
// whether it did before 30 seconds passed (or the test ended). It is for
// state a test can only observe from outside and the proxy updates after
// it has answered the clients, such as its metrics or its cache
// directory; events the proxy logs are awaited with WaitForLog instead.
func pollUntil(t *testing.T, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			return false
		}
	}
}

// reservePort returns a loopback address nothing listens on at the moment
// it returns; any other process may take it afterwards, so a test must not
// count on listening there later (see startSeedProxy).
func reservePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// replaceEnv returns env with key set to value.
func replaceEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}
