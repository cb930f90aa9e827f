// Command cluster measures one ecr-proxy replica against three behind
// round-robin, sharing a cache in an S3-compatible server (gofakes3) with
// Redis, and three without Redis (each replica downloading for itself),
// in front of the ECR emulator: N clients pull the same cold image at
// once. It reports the ECR blob GETs, the wall time until every client
// has every byte, and the bytes the replicas read from and wrote to S3
// (counted by a relay in front of the server, HTTP included).
//
//	go run ./bench/cluster -runs 3 -clients 60      # the large image, 4 × 64 MiB
//	go run ./bench/cluster -smoke                    # 4 × 1 MiB, 8 clients, 1 run
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster bench:", err)
		os.Exit(1)
	}
}

type options struct {
	runs, clients, layers, parallel int
	layerSize                       int64
}

func run() error {
	o := options{}
	smoke := flag.Bool("smoke", false, "quick check: 4 × 1 MiB, 8 clients, 1 run")
	flag.IntVar(&o.runs, "runs", 3, "repetitions; figures are medians with min and max")
	flag.IntVar(&o.clients, "clients", 60, "clients pulling the same cold image at once")
	flag.IntVar(&o.layers, "layers", 4, "layers of the image")
	flag.Int64Var(&o.layerSize, "layer-size", 64<<20, "bytes per layer")
	flag.IntVar(&o.parallel, "parallel", 3, "layers a client downloads at once")
	flag.Parse()
	if *smoke {
		o.runs, o.clients, o.layerSize = 1, 8, 1<<20
	}
	logrus.SetOutput(io.Discard) // the emulator's distribution logs through it
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "ecr-proxy-cluster-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintln(os.Stderr, "building ecr-proxy…")
	bin, err := proxytest.Build(ctx, tmp)
	if err != nil {
		return err
	}
	emu, err := ecrtest.Start()
	if err != nil {
		return fmt.Errorf("start ECR emulator: %w", err)
	}
	defer emu.Close() //nolint:errcheck // the end of the run
	img, err := ecrtest.RandomImage(o.layers, o.layerSize, types.OCIManifestSchema1)
	if err != nil {
		return err
	}
	digest, err := emu.Seed(ctx, "bench/large:v1", img)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	s3, err := enginetest.RunS3("cache")
	if err != nil {
		return err
	}
	defer s3.Close()
	relay, err := newRelay(s3.Addr())
	if err != nil {
		return err
	}
	defer relay.Close() //nolint:errcheck // the end of the run
	redis, err := enginetest.RunRedis(filepath.Join(tmp, "redis"))
	if err != nil {
		return err
	}
	defer redis.Close()

	lab := &lab{bin: bin, tmp: tmp, emu: emu, s3: s3, relay: relay, redisAddr: redis.Addr(), digest: digest, o: o}
	results := map[setup][]measure{}
	for r := range o.runs {
		for _, st := range setups {
			m, err := lab.once(ctx, st, fmt.Sprintf("run-%d-%d-%v", r, st.replicas, st.redis))
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", r+1, st, err)
			}
			fmt.Fprintf(os.Stderr, "run %d, %s: %+v\n", r+1, st, m)
			results[st] = append(results[st], m)
		}
	}
	report(os.Stdout, o, results)
	return nil
}

// setup is a number of replicas on the bucket, with Redis or without.
type setup struct {
	replicas int
	redis    bool
}

// setups are compared in this order.
var setups = []setup{{1, true}, {3, true}, {3, false}}

func (s setup) String() string {
	switch {
	case s.replicas == 1:
		return "1 replica"
	case s.redis:
		return fmt.Sprintf("%d replicas, round-robin, Redis", s.replicas)
	}
	return fmt.Sprintf("%d replicas, round-robin, no Redis", s.replicas)
}

// measure is one run's figures.
type measure struct {
	wall              time.Duration
	ecrBlobGETs       int
	s3Read, s3Written int64
}

// lab is what every run uses.
type lab struct {
	bin, tmp  string
	emu       *ecrtest.Emulator
	s3        *enginetest.S3
	relay     *relay
	redisAddr string
	digest    string
	o         options
}

// once starts the replicas on a fresh prefix of the bucket (and so fresh
// Redis keys), pulls with every client at once, and stops the replicas
// (which lets them finish their uploads) before reading the counters.
func (l *lab) once(ctx context.Context, st setup, prefix string) (measure, error) {
	dir := filepath.Join(l.tmp, prefix)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return measure{}, err
	}
	extra := ""
	if st.redis {
		extra = fmt.Sprintf("redis:\n  addrs: [%s]\nmiddleware:\n  storage:\n    - name: redislru\n      options: {maxsize: 100g}\n", l.redisAddr)
	}
	cfg, err := proxytest.WriteConfig(dir, proxytest.ConfigOptions{
		RemoteURL: l.emu.RegistryURL(), Region: l.emu.Region(), StorageDriver: "s3", RootDirectory: "/" + prefix,
		StorageParams: map[string]string{
			"bucket": l.s3.Bucket, "region": "us-east-1", "regionendpoint": "http://" + l.relay.Addr(),
			"forcepathstyle": "true", "secure": "false", "accesskey": "bench", "secretkey": "bench",
		},
		Extra: extra,
	})
	if err != nil {
		return measure{}, err
	}
	var ps []*proxytest.Proxy
	defer func() {
		for _, p := range ps {
			_ = p.Stop()
		}
	}()
	for range st.replicas {
		p, err := proxytest.Start(ctx, proxytest.Config{Binary: l.bin, Args: []string{"serve", cfg},
			Env: append(l.emu.Env(), "HOME="+dir, "OTEL_TRACES_EXPORTER=none", "AWS_EC2_METADATA_DISABLED=true")})
		if err != nil {
			return measure{}, err
		}
		ps = append(ps, p)
		if err := p.WaitForToken(ctx); err != nil {
			return measure{}, err
		}
	}
	l.emu.ResetCounts()
	l.relay.reset()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for i := range l.o.clients {
		g.Go(func() error { return l.pull(gctx, ps[i%len(ps)]) })
	}
	err = g.Wait()
	wall := time.Since(start)
	if err != nil {
		return measure{}, err
	}
	for _, p := range ps {
		if err := p.Stop(); err != nil {
			return measure{}, err
		}
		if os.Getenv("BENCH_LOGS") != "" {
			fmt.Fprintln(os.Stderr, p.Logs())
		}
	}
	ps = nil
	read, written := l.relay.counts()
	return measure{wall: wall, ecrBlobGETs: l.emu.Count(ecrtest.KindBlobGET), s3Read: read, s3Written: written}, nil
}

// pull reads the image through p, every layer, parallel at a time;
// go-containerregistry checks each digest.
func (l *lab) pull(ctx context.Context, p *proxytest.Proxy) error {
	ref, err := name.ParseReference(p.Addr+"/bench/large@"+l.digest, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	g := errgroup.Group{}
	g.SetLimit(l.o.parallel)
	for _, layer := range layers {
		g.Go(func() error { return readLayer(layer) })
	}
	return g.Wait()
}

func readLayer(layer v1.Layer) error {
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return err
}

// relay forwards TCP connections to the S3 server, counting the bytes
// each way.
type relay struct {
	ln            net.Listener
	target        string
	read, written atomic.Int64 // from S3 to the replicas; from them to S3
}

func newRelay(target string) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target}
	go r.serve()
	return r, nil
}

func (r *relay) Addr() string { return r.ln.Addr().String() }

func (r *relay) Close() error { return r.ln.Close() }

func (r *relay) reset() { r.read.Store(0); r.written.Store(0) }

func (r *relay) counts() (int64, int64) { return r.read.Load(), r.written.Load() }

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.pipe(c)
	}
}

func (r *relay) pipe(c net.Conn) {
	defer c.Close() //nolint:errcheck // relayed
	s, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer s.Close() //nolint:errcheck // relayed
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(counter{s, &r.written}, c)
		_ = s.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(counter{c, &r.read}, s)
		_ = c.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
}

// counter counts the bytes written through it as they pass.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// report prints the Markdown section.
func report(w io.Writer, o options, results map[setup][]measure) {
	fmt.Fprintf(w, "| %d clients, cold, %d × %d MiB | ECR blob GETs | wall time (s) | S3 read (MiB) | S3 written (MiB) |\n",
		o.clients, o.layers, o.layerSize>>20)
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, st := range setups {
		ms := results[st]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", st,
			med(ms, func(m measure) float64 { return float64(m.ecrBlobGETs) }, "%.0f"),
			med(ms, func(m measure) float64 { return m.wall.Seconds() }, "%.2f"),
			med(ms, func(m measure) float64 { return float64(m.s3Read) / (1 << 20) }, "%.0f"),
			med(ms, func(m measure) float64 { return float64(m.s3Written) / (1 << 20) }, "%.0f"))
	}
}

// med is the median of f over ms, with min and max when they differ.
func med(ms []measure, f func(measure) float64, format string) string {
	vs := make([]float64, len(ms))
	for i, m := range ms {
		vs[i] = f(m)
	}
	slices.Sort(vs)
	s := fmt.Sprintf(format, vs[len(vs)/2])
	if len(vs) > 1 && vs[0] != vs[len(vs)-1] {
		s += fmt.Sprintf(" ("+format+"–"+format+")", vs[0], vs[len(vs)-1])
	}
	return s
}
