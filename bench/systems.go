package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// Names of the systems, as they appear in the report.
const (
	sysDirect = "direct"
	sysECR    = "ecr-proxy"
	sysECRTTL = "ecr-proxy+tagttl" // with a 1 h tag revalidation window
	sysDist   = "distribution"
	sysNginx  = "nginx"
	sysFloor  = "floor" // the least a verifying cache does (bench/cmd/floor)
)

// distProxyPackage is distribution's own registry, built for the benchmark;
// floorPackage the minimal verifying cache.
const (
	distProxyPackage = "github.com/ecr-proxy/ecr-proxy/bench/cmd/distproxy"
	floorPackage     = "github.com/ecr-proxy/ecr-proxy/bench/cmd/floor"
)

//go:embed nginx.conf.tmpl
var nginxConfTemplate string

// system is one way of reaching the emulated ECR.
type system struct {
	name string
	// start brings up a fresh instance with an empty cache.
	start func(ctx context.Context) (*instance, error)
}

// instance is a started system.
type instance struct {
	// host is the host:port the client pulls from.
	host string
	// auth is what the client presents.
	auth authn.Authenticator
	// debug is the address of its debug server (pprof), when it has one.
	debug string
	// pids lists the processes whose peak memory counts; nil for direct.
	pids func() []int
	// stop stops the processes and removes the cache.
	stop func() error
}

// lab is what every system is started against.
type lab struct {
	emu      *ecrtest.Emulator
	user     string // a token minted from the emulator, for static credentials
	password string
	tmp      string // parent of every instance's directory
	ecrBin   string // ecr-proxy (cmd/registry)
	distBin  string // bench/cmd/distproxy
	floorBin string // bench/cmd/floor
	nginxBin string // "" when nginx is not used
}

// buildBinaries compiles ecr-proxy (unless prebuilt names a binary),
// distproxy and floor into dir.
func buildBinaries(ctx context.Context, dir, prebuilt string) (ecrBin, distBin, floorBin string, err error) {
	ecrBin = prebuilt
	if ecrBin == "" {
		ecrBin, err = proxytest.Build(ctx, dir)
	} else {
		ecrBin, err = filepath.Abs(ecrBin)
	}
	if err != nil {
		return "", "", "", fmt.Errorf("build ecr-proxy: %w", err)
	}
	distBin, floorBin = filepath.Join(dir, "distproxy"), filepath.Join(dir, "floor")
	for pkg, bin := range map[string]string{distProxyPackage: distBin, floorPackage: floorBin} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", "", "", fmt.Errorf("build %s: %w\n%s", pkg, err, out.String())
		}
	}
	return ecrBin, distBin, floorBin, nil
}

// systems returns the systems named in names (direct always comes first).
func (l *lab) systems(names []string) ([]system, error) {
	all := map[string]func(context.Context) (*instance, error){
		sysECR:    l.startECRProxy,
		sysECRTTL: l.startECRProxyTagTTL,
		sysDist:   l.startDistProxy,
		sysNginx:  l.startNginx,
		sysFloor:  l.startFloor,
	}
	out := []system{{name: sysDirect, start: l.startDirect}}
	for _, n := range names {
		start, ok := all[n]
		if !ok {
			return nil, fmt.Errorf("unknown system %q: want %s, %s, %s, %s or %s", n, sysECR, sysECRTTL, sysDist, sysNginx, sysFloor)
		}
		if n == sysNginx && l.nginxBin == "" {
			continue
		}
		out = append(out, system{name: n, start: start})
	}
	return out, nil
}

// startDirect is the client talking to the emulated ECR with a token.
func (l *lab) startDirect(context.Context) (*instance, error) {
	return &instance{
		host: l.emu.RegistryHost(),
		auth: &authn.Basic{Username: l.user, Password: l.password},
		stop: func() error { return nil },
	}, nil
}

// hermeticEnv is the base environment of a Go proxy child: no shared AWS
// files, no instance metadata, no OpenTelemetry exporter.
func hermeticEnv(home string) []string {
	return []string{
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"OTEL_TRACES_EXPORTER=none",
	}
}

// startECRProxy runs ecr-proxy with the emulator's static access key; it
// mints its ECR token itself. The cache is the product's: the bounded
// lrufilesystem driver.
func (l *lab) startECRProxy(ctx context.Context) (*instance, error) {
	return l.startECRProxyWith(ctx)
}

// startECRProxyTagTTL is ecr-proxy with a 1 h tag revalidation window.
func (l *lab) startECRProxyTagTTL(ctx context.Context) (*instance, error) {
	return l.startECRProxyWith(ctx, "tagttl: 1h")
}

func (l *lab) startECRProxyWith(ctx context.Context, ecrSettings ...string) (*instance, error) {
	dir, err := os.MkdirTemp(l.tmp, "ecr-proxy-")
	if err != nil {
		return nil, fmt.Errorf("create ecr-proxy directory: %w", err)
	}
	cfg, err := proxytest.WriteConfig(dir, proxytest.ConfigOptions{
		RemoteURL:     l.emu.RegistryURL(),
		Region:        l.emu.Region(),
		RootDirectory: filepath.Join(dir, "cache"),
		StorageDriver: "lrufilesystem",
		StorageParams: map[string]string{"maxsize": "64g"},
		ECRExtra:      ecrSettings,
	})
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return l.startGoProxy(ctx, l.ecrBin, dir, cfg, append(hermeticEnv(dir), l.emu.Env()...))
}

// distConfig is distribution's proxy mode with static credentials, set up
// like proxytest.WriteConfig sets up ecr-proxy.
const distConfig = `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
  draintimeout: 30s
  debug:
    addr: 127.0.0.1:0
    prometheus:
      enabled: true
proxy:
  remoteurl: %s
  username: %s
  password: %s
`

// startDistProxy runs distribution's own proxy mode with a token minted
// from the emulator as proxy.username/password.
func (l *lab) startDistProxy(ctx context.Context) (*instance, error) {
	dir, err := os.MkdirTemp(l.tmp, "distribution-")
	if err != nil {
		return nil, fmt.Errorf("create distribution directory: %w", err)
	}
	cfg := filepath.Join(dir, "config.yml")
	y := fmt.Sprintf(distConfig, filepath.Join(dir, "cache"), l.emu.RegistryURL(), l.user, l.password)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("write distribution config: %w", err), os.RemoveAll(dir))
	}
	return l.startGoProxy(ctx, l.distBin, dir, cfg, hermeticEnv(dir))
}

// startFloor runs the minimal verifying cache with a token minted from
// the emulator.
func (l *lab) startFloor(ctx context.Context) (*instance, error) {
	dir, err := os.MkdirTemp(l.tmp, "floor-")
	if err != nil {
		return nil, fmt.Errorf("create floor directory: %w", err)
	}
	args := []string{"-upstream", l.emu.RegistryURL(), "-user", l.user, "-password", l.password, "-dir", filepath.Join(dir, "cache")}
	return l.startChild(ctx, l.floorBin, dir, args, hermeticEnv(dir))
}

// startGoProxy runs "bin serve cfg" as a child and finds its process.
func (l *lab) startGoProxy(ctx context.Context, bin, dir, cfg string, env []string) (*instance, error) {
	return l.startChild(ctx, bin, dir, []string{"serve", cfg}, env)
}

// startChild runs bin with args as a child that logs where it listens,
// and finds its process.
func (l *lab) startChild(ctx context.Context, bin, dir string, args, env []string) (*instance, error) {
	p, err := proxytest.Start(ctx, proxytest.Config{Binary: bin, Args: args, Env: env})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start %s: %w", filepath.Base(bin), err), os.RemoveAll(dir))
	}
	stop := func() error {
		err := p.Stop()
		return errors.Join(err, os.RemoveAll(dir))
	}
	pid, err := childPID(bin)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	return &instance{
		host:  p.Addr,
		debug: p.DebugAddr,
		auth:  authn.Anonymous,
		pids:  func() []int { return []int{pid} },
		stop:  stop,
	}, nil
}

// nginxConf fills nginx.conf.tmpl.
type nginxConf struct {
	Prefix       string // temporary prefix: config, cache, logs, pid
	Port         int    // loopback port nginx listens on
	ECR          string // the emulated ECR, http://127.0.0.1:PORT
	S3Host       string // host:port of the presigned S3 URLs
	BasicToken   string // base64("AWS:" + token)
	CacheMaxSize string // proxy_cache_path max_size
	ModulesDir   string // where the lua, ndk and set-misc modules are
}

// startNginx runs nginx with the seed's configuration in a new prefix.
func (l *lab) startNginx(ctx context.Context) (*instance, error) {
	dir, err := os.MkdirTemp(l.tmp, "nginx-")
	if err != nil {
		return nil, fmt.Errorf("create nginx prefix: %w", err)
	}
	fail := func(err error) (*instance, error) { return nil, errors.Join(err, os.RemoveAll(dir)) }
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	s3, err := s3URLHost(l.emu)
	if err != nil {
		return fail(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := writeNginxConf(conf, nginxConf{
		Prefix:       dir,
		Port:         port,
		ECR:          l.emu.RegistryURL(),
		S3Host:       s3,
		BasicToken:   base64.StdEncoding.EncodeToString([]byte(l.user + ":" + l.password)),
		CacheMaxSize: "75g",
		ModulesDir:   nginxModulesDir,
	}); err != nil {
		return fail(err)
	}
	cmd := exec.Command(l.nginxBin, "-p", dir, "-c", conf) //nolint:gosec // the configured nginx binary
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start nginx: %w", err))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			err = <-done
		}
		if err != nil {
			err = fmt.Errorf("nginx: %w\n%s", err, out.String())
		}
		return errors.Join(err, os.RemoveAll(dir))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(ctx, addr, done); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		err = fmt.Errorf("nginx: %w\n%s%s", err, out.String(), log)
		if !errors.Is(err, errExited) {
			err = errors.Join(err, stop())
		} else {
			err = errors.Join(err, os.RemoveAll(dir))
		}
		return nil, err
	}
	master := cmd.Process.Pid
	return &instance{
		host: addr,
		auth: authn.Anonymous,
		pids: func() []int { return append([]int{master}, childrenOf(master)...) },
		stop: stop,
	}, nil
}

// writeNginxConf renders nginx.conf.tmpl into path.
func writeNginxConf(path string, c nginxConf) error {
	t, err := template.New("nginx.conf").Option("missingkey=error").Parse(nginxConfTemplate)
	if err != nil {
		return fmt.Errorf("parse nginx template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, c); err != nil {
		return fmt.Errorf("render nginx template: %w", err)
	}
	for _, sub := range []string{"cache", "temp"} {
		if err := os.MkdirAll(filepath.Join(c.Prefix, sub), 0o700); err != nil {
			return fmt.Errorf("create nginx %s directory: %w", sub, err)
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write nginx config: %w", err)
	}
	return nil
}

// s3URLHost is the host:port the emulator writes into presigned URLs
// (bench starts it with WithS3URLHost("localhost")).
func s3URLHost(emu *ecrtest.Emulator) (string, error) {
	_, port, err := net.SplitHostPort(strings.TrimPrefix(emu.S3URL(), "http://"))
	if err != nil {
		return "", fmt.Errorf("parse S3 address %q: %w", emu.S3URL(), err)
	}
	return net.JoinHostPort(s3Host, port), nil
}

// freePort returns a loopback port nothing listened on a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("reserve a port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("release port: %w", err)
	}
	return port, nil
}

// errExited says a child process ended early.
var errExited = errors.New("process exited")

// waitListening waits until addr accepts connections, the process ends
// (done) or 15 seconds pass.
func waitListening(ctx context.Context, addr string, done <-chan error) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case werr := <-done:
			return fmt.Errorf("%w before listening on %s (%w)", errExited, addr, werr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after 15s: %w", addr, err)
		}
	}
}

// nginxModulesDir holds Debian's dynamic nginx modules.
const nginxModulesDir = "/usr/lib/nginx/modules"

// nginxModules are the modules the seed's configuration needs.
var nginxModules = []string{"ndk_http_module.so", "ngx_http_lua_module.so", "ngx_http_set_misc_module.so"}

// findNginx returns the nginx binary to use, or why there is none: the
// binary, or the modules the seed's configuration needs, are missing.
func findNginx(name string) (string, error) {
	bin, err := exec.LookPath(name)
	if err != nil && !strings.Contains(name, "/") {
		bin, err = exec.LookPath(filepath.Join("/usr/sbin", name))
	}
	if err != nil {
		return "", fmt.Errorf("nginx not found (%w); on Debian: apt-get install nginx libnginx-mod-http-lua libnginx-mod-http-set-misc lua-cjson", err)
	}
	for _, m := range nginxModules {
		if _, err := os.Stat(filepath.Join(nginxModulesDir, m)); err != nil {
			return "", fmt.Errorf("nginx module missing (%w); on Debian: apt-get install libnginx-mod-http-lua libnginx-mod-http-set-misc lua-cjson", err)
		}
	}
	return bin, nil
}
