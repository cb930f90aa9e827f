package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// s3Host is the host name the emulator writes into presigned URLs.
// go-containerregistry refuses a redirect from 127.0.0.1 to another IP
// literal (SSRF protection) but accepts a host name.
const s3Host = "localhost"

// imageShape is the layer count and size of a benchmark image.
type imageShape struct {
	layers int
	size   int64
}

var (
	fullLarge  = imageShape{4, 64 << 20}
	fullSmall  = imageShape{30, 256 << 10}
	smokeLarge = imageShape{4, 1 << 20}
	smokeSmall = imageShape{6, 64 << 10}
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command line's flags.
type options struct {
	runs, clients, tagPulls, parallel int
	smoke                             bool
	out, nginx, only, ecrBin          string
	pushSize, bigPush                 int64
	profileDir                        string
	large, small                      imageShape
}

// parseFlags reads the command line; -smoke lowers the defaults of the
// flags not given.
func parseFlags() (options, error) {
	var (
		runs     = flag.Int("runs", 5, "repetitions of every scenario; figures are medians with min and max")
		smoke    = flag.Bool("smoke", false, "quick check: tiny images, 1 run, 4 clients, 20 tag pulls, nginx skipped when not installed")
		clients  = flag.Int("clients", 20, "clients pulling the same cold image at once")
		tagPulls = flag.Int("tag-pulls", 200, "warm manifest HEADs by tag timed for the latency percentiles")
		parallel = flag.Int("parallel", 3, "layers a client downloads at once (docker's default is 3)")
		out      = flag.String("out", "", "write the Markdown report to this file as well as stdout (e.g. bench/RESULTS.md)")
		nginx    = flag.String("nginx", "nginx", "nginx binary; empty to leave nginx out")
		only     = flag.String("systems", "ecr-proxy,ecr-proxy+tagttl,distribution,nginx,floor", "comma-separated systems to compare with direct")
		ecrBin   = flag.String("ecr-proxy-bin", "", "use this ecr-proxy binary instead of building ./cmd/registry")
		pushSize = flag.Int64("push-layer-size", 64<<20, "layer size of the 4-layer pushed image, bytes")
	)
	profileDir := flag.String("profile", "", "only profile ecr-proxy (cold large and small pulls, warm small pull, tag HEADs, push): write CPU profiles to this directory and print pprof -top of each")
	bigPush := flag.Int64("big-push", 0, "only push one streamed layer of this many bytes through ecr-proxy and report its peak memory (e.g. 1073741824)")
	flag.Parse()
	o := options{
		runs: *runs, clients: *clients, tagPulls: *tagPulls, parallel: *parallel, smoke: *smoke,
		out: *out, nginx: *nginx, only: *only, ecrBin: *ecrBin, pushSize: *pushSize,
		bigPush: *bigPush, profileDir: *profileDir, large: fullLarge, small: fullSmall,
	}
	if o.smoke {
		o.large, o.small = smokeLarge, smokeSmall
		if !flagSet("runs") {
			o.runs = 1
		}
		if !flagSet("clients") {
			o.clients = 4
		}
		if !flagSet("tag-pulls") {
			o.tagPulls = 20
		}
		if !flagSet("push-layer-size") {
			o.pushSize = smokeLarge.size
		}
	}
	if o.runs < 1 || o.clients < 1 || o.tagPulls < 1 || o.parallel < 1 || o.pushSize < 1 {
		return o, errors.New("-runs, -clients, -tag-pulls, -parallel and -push-layer-size must be at least 1")
	}
	return o, nil
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	// The emulator's distribution logs through logrus' global logger.
	logrus.SetOutput(io.Discard)

	tmp, err := os.MkdirTemp("", "ecr-proxy-bench-")
	if err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	l, nginxWhy, err := startLab(ctx, tmp, o)
	if l != nil && l.emu != nil {
		defer l.emu.Close()
	}
	if err != nil {
		return err
	}
	if o.bigPush > 0 {
		return l.bigPush(ctx, os.Stdout, o.bigPush)
	}
	b, err := seedBench(ctx, l, o)
	if err != nil {
		return err
	}
	systems, err := l.systems(splitList(o.only))
	if err != nil {
		return err
	}
	if o.profileDir != "" {
		return b.profiles(ctx, o.profileDir, os.Stdout)
	}
	for r := range o.runs {
		b.run(ctx, r, systems)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	h := header{command: command(), started: started, elapsed: time.Since(started), smoke: o.smoke, nginxWhy: nginxWhy}
	return writeReport(b, h, o, systems)
}

// startLab finds nginx, builds the binaries into tmp and starts the ECR
// emulator with a token minted; the emulator, when set, is the caller's
// to close, even on error. nginxWhy says why nginx is left out of a
// smoke run.
func startLab(ctx context.Context, tmp string, o options) (l *lab, nginxWhy string, err error) {
	l = &lab{tmp: tmp}
	if o.nginx != "" && strings.Contains(o.only, sysNginx) {
		l.nginxBin, err = findNginx(o.nginx)
		if err != nil {
			if !o.smoke {
				return l, "", fmt.Errorf("%w (or leave nginx out with -nginx '')", err)
			}
			nginxWhy = err.Error()
		}
	}
	fmt.Fprintln(os.Stderr, "building ecr-proxy and distproxy…")
	if l.ecrBin, l.distBin, l.floorBin, err = buildBinaries(ctx, tmp, o.ecrBin); err != nil {
		return l, "", err
	}
	l.emu, err = ecrtest.Start(ecrtest.WithS3Addr("127.0.0.1:0"), ecrtest.WithS3URLHost(s3Host))
	if err != nil {
		return l, "", fmt.Errorf("start ECR emulator: %w", err)
	}
	if l.user, l.password, err = l.emu.Token(); err != nil {
		return l, "", fmt.Errorf("mint token: %w", err)
	}
	return l, nginxWhy, nil
}

// seedBench seeds the large and small images in the emulator and builds
// the image to push.
func seedBench(ctx context.Context, l *lab, o options) (*bench, error) {
	fmt.Fprintln(os.Stderr, "seeding images…")
	b := &bench{
		lab: l,
		p:   params{runs: o.runs, clients: o.clients, tagPulls: o.tagPulls, parallel: o.parallel},
		res: newResults(o.runs),
		log: os.Stderr,
	}
	var err error
	if b.large, err = seedImage(ctx, l.emu, "large", "bench/large:v1", o.large); err != nil {
		return nil, err
	}
	if b.small, err = seedImage(ctx, l.emu, "small", "bench/small:v1", o.small); err != nil {
		return nil, err
	}
	if b.push, err = pushImage(imageShape{pushLayers, o.pushSize}); err != nil {
		return nil, err
	}
	return b, nil
}

// writeReport prints the report, writes it to -out when given, and fails
// when a scenario failed.
func writeReport(b *bench, h header, o options, systems []system) error {
	names := make([]string, len(systems))
	for i, s := range systems {
		names[i] = s.name
	}
	if b.lab.nginxBin != "" {
		h.nginxVersion = nginxVersion(b.lab.nginxBin)
	}
	h.ecrProxy = "built from ./cmd/registry at " + sourceRevision()
	if o.ecrBin != "" {
		h.ecrProxy = "prebuilt binary " + o.ecrBin
	}
	var report strings.Builder
	if err := b.report(&report, h, names); err != nil {
		return err
	}
	fmt.Print(report.String())
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report.String()), 0o644); err != nil { //nolint:gosec // a report meant to be read
			return fmt.Errorf("write %s: %w", o.out, err)
		}
		fmt.Fprintln(os.Stderr, "wrote", o.out)
	}
	if n := len(b.res.failures()); n > 0 {
		return fmt.Errorf("%d scenario(s) failed; see Problems in the report", n)
	}
	return nil
}

// seedImage builds a random image of the given shape and seeds it.
func seedImage(ctx context.Context, emu *ecrtest.Emulator, label, ref string, s imageShape) (*benchImage, error) {
	img, err := ecrtest.RandomImage(s.layers, s.size)
	if err != nil {
		return nil, fmt.Errorf("build %s image: %w", label, err)
	}
	d, err := emu.Seed(ctx, ref, img)
	if err != nil {
		return nil, fmt.Errorf("seed %s image: %w", label, err)
	}
	return &benchImage{
		label:  label,
		ref:    ref,
		img:    img,
		digest: d,
		blobs:  s.layers + 1,
		shape:  fmt.Sprintf("%d × %s", s.layers, sizeString(s.size)),
	}, nil
}

// pushLayers is the layer count of the pushed image.
const pushLayers = 4

// pushImage builds the random image the push scenario writes. It is not
// seeded: its blobs are new to the emulator.
func pushImage(s imageShape) (*benchImage, error) {
	img, err := ecrtest.RandomImage(s.layers, s.size)
	if err != nil {
		return nil, fmt.Errorf("build push image: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("digest of push image: %w", err)
	}
	return &benchImage{label: "push", img: img, digest: d.String(), blobs: s.layers + 1,
		shape: fmt.Sprintf("%d × %s", s.layers, sizeString(s.size))}, nil
}

// sizeString prints whole KiB or MiB.
func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// splitList splits a comma-separated flag.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// flagSet reports whether the named flag was given.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// command is how the benchmark was invoked, for the report.
func command() string {
	return strings.TrimSpace("go run ./bench " + strings.Join(os.Args[1:], " "))
}
