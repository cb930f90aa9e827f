package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// Metrics, as keys of results. Times are in seconds unless the name says
// otherwise.
const (
	mPullLargeCold = "pull-large-cold"
	mPullLargeWarm = "pull-large-warm"
	mPullSmallCold = "pull-small-cold"
	mPullSmallWarm = "pull-small-warm"
	mPush          = "push-large"
	mConcWall      = "concurrent-cold"
	mConcBlobGET   = "concurrent-blob-get"
	mConcS3GET     = "concurrent-s3-get"
	mColdBlobGET   = "cold-blob-get"
	mWarmUpstream  = "warm-upstream"
	mRSSPull       = "rss-pull-mib"
	mRSSConc       = "rss-concurrent-mib"
	mTagP50        = "tag-p50-ms"
	mTagP99        = "tag-p99-ms"
	mTagUpstream   = "tag-upstream"
)

// registryKinds are the emulator counters of requests to the registry and
// to S3: what a proxy sends upstream for content.
var registryKinds = []ecrtest.Kind{
	ecrtest.KindPing, ecrtest.KindManifestHEAD, ecrtest.KindManifestGET,
	ecrtest.KindBlobHEAD, ecrtest.KindBlobGET, ecrtest.KindTagsList, ecrtest.KindS3GET,
}

// benchImage is an image seeded into the emulator.
type benchImage struct {
	label  string // "large", "small"
	ref    string // repo:tag, without registry
	img    v1.Image
	digest string // manifest digest
	blobs  int    // layers + config
	shape  string // "4 × 64 MiB"
}

// params are the knobs of a benchmark.
type params struct {
	runs     int
	clients  int // concurrent cold clients
	tagPulls int // warm manifest HEADs by tag
	parallel int // layers a client downloads at once
}

// bench runs the scenarios and collects results.
type bench struct {
	lab          *lab
	p            params
	large, small *benchImage
	push         *benchImage // pushed, not seeded
	res          *results
	log          io.Writer
}

// run is one round of every scenario over every system. The order of the
// systems rotates from run to run so that none always goes first.
func (b *bench) run(ctx context.Context, run int, systems []system) {
	order := append(append([]system{}, systems[run%len(systems):]...), systems[:run%len(systems)]...)
	for _, img := range []*benchImage{b.large, b.small} {
		for _, s := range order {
			if ctx.Err() != nil {
				return
			}
			b.pulls(ctx, run, s, img)
		}
	}
	for _, s := range order {
		if ctx.Err() != nil {
			return
		}
		b.concurrent(ctx, run, s)
	}
}

// pulls starts s fresh, pulls img cold then warm and records the peak
// memory; then, on the same instance, times warm tag pulls (small image)
// or a push (large image).
func (b *bench) pulls(ctx context.Context, run int, s system, img *benchImage) {
	cold, warm := mPullSmallCold, mPullSmallWarm
	if img == b.large {
		cold, warm = mPullLargeCold, mPullLargeWarm
	}
	in, err := s.start(ctx)
	if err != nil {
		b.fail(run, s, "start", err)
		return
	}
	defer b.stop(run, s, in)

	emu := b.lab.emu
	emu.ResetCounts()
	d, err := pullImage(ctx, in.host, in.auth, img, b.p.parallel)
	if err != nil {
		b.fail(run, s, cold, err)
		return
	}
	b.record(cold, s.name, run, d.Seconds(), "s")
	if img == b.large && s.name != sysDirect {
		b.res.add(mColdBlobGET, s.name, run, float64(emu.Count(ecrtest.KindBlobGET)))
	}

	emu.ResetCounts()
	d, err = pullImage(ctx, in.host, in.auth, img, b.p.parallel)
	if err != nil {
		b.fail(run, s, warm, err)
		return
	}
	b.record(warm, s.name, run, d.Seconds(), "s")
	if in.pids != nil && img == b.large {
		b.res.add(mWarmUpstream, s.name, run, float64(upstreamRequests(emu)))
		b.recordRSS(run, s, in, mRSSPull)
	}

	if img == b.small {
		b.tagLatency(ctx, run, s, in)
	} else {
		b.pushTo(ctx, run, s, in)
	}
}

// concurrent starts s fresh and has b.p.clients clients pull the large
// image at once.
func (b *bench) concurrent(ctx context.Context, run int, s system) {
	in, err := s.start(ctx)
	if err != nil {
		b.fail(run, s, "start", err)
		return
	}
	defer b.stop(run, s, in)

	emu := b.lab.emu
	emu.ResetCounts()
	start := make(chan struct{})
	errs := make([]error, b.p.clients)
	var wg sync.WaitGroup
	for i := range b.p.clients {
		wg.Go(func() {
			<-start
			_, errs[i] = pullImage(ctx, in.host, in.auth, b.large, b.p.parallel)
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	d := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		b.fail(run, s, mConcWall, err)
		return
	}
	b.record(mConcWall, s.name, run, d.Seconds(), "s")
	if s.name != sysDirect {
		b.res.add(mConcBlobGET, s.name, run, float64(emu.Count(ecrtest.KindBlobGET)))
		b.res.add(mConcS3GET, s.name, run, float64(emu.Count(ecrtest.KindS3GET)))
		fmt.Fprintf(b.log, "run %d %-12s %-22s blob GETs %d, S3 GETs %d\n", run+1, s.name, "", emu.Count(ecrtest.KindBlobGET), emu.Count(ecrtest.KindS3GET))
		b.recordRSS(run, s, in, mRSSConc)
	}
}

// tagLatency times b.p.tagPulls manifest HEADs by tag of the small image,
// already pulled, on one client connection, and counts the upstream
// requests they cause.
func (b *bench) tagLatency(ctx context.Context, run int, s system, in *instance) {
	ref, err := name.ParseReference(in.host+"/"+b.small.ref, name.Insecure)
	if err != nil {
		b.fail(run, s, mTagP50, fmt.Errorf("parse reference: %w", err))
		return
	}
	tr := newTransport()
	defer tr.CloseIdleConnections()
	puller, err := remote.NewPuller(remote.WithAuth(in.auth), remote.WithTransport(tr))
	if err != nil {
		b.fail(run, s, mTagP50, fmt.Errorf("create puller: %w", err))
		return
	}
	if _, err := puller.Head(ctx, ref); err != nil { // ping and authenticate once
		b.fail(run, s, mTagP50, fmt.Errorf("head %s: %w", ref, err))
		return
	}
	b.lab.emu.ResetCounts()
	ms := make([]float64, 0, b.p.tagPulls)
	for range b.p.tagPulls {
		t0 := time.Now()
		desc, err := puller.Head(ctx, ref)
		if err != nil {
			b.fail(run, s, mTagP50, fmt.Errorf("head %s: %w", ref, err))
			return
		}
		ms = append(ms, float64(time.Since(t0))/float64(time.Millisecond))
		if desc.Digest.String() != b.small.digest {
			b.fail(run, s, mTagP50, fmt.Errorf("head %s: digest %s, want %s", ref, desc.Digest, b.small.digest))
			return
		}
	}
	b.record(mTagP50, s.name, run, percentile(ms, 50), "ms")
	b.record(mTagP99, s.name, run, percentile(ms, 99), "ms")
	if s.name != sysDirect {
		b.res.add(mTagUpstream, s.name, run, float64(upstreamRequests(b.lab.emu))/float64(b.p.tagPulls))
	}
}

// push pushes b.push to a new repository through in. A proxy
// that does not accept an upload is recorded as not available.
func (b *bench) pushTo(ctx context.Context, run int, s system, in *instance) {
	repo := fmt.Sprintf("bench/push-%s-%d", strings.ReplaceAll(s.name, "+", "-"), run)
	if s.name != sysDirect {
		why, err := probePush(ctx, in.host, repo)
		if err != nil {
			b.fail(run, s, mPush, err)
			return
		}
		if why != "" {
			b.res.note(mPush, s.name, "upload "+why)
			fmt.Fprintf(b.log, "run %d %-12s %-22s not available: upload answered %s\n", run+1, s.name, mPush, why)
			return
		}
	}
	ref, err := name.ParseReference(in.host+"/"+repo+":v1", name.Insecure)
	if err != nil {
		b.fail(run, s, mPush, fmt.Errorf("parse reference: %w", err))
		return
	}
	tr := newTransport()
	defer tr.CloseIdleConnections()
	t0 := time.Now()
	if err := remote.Write(ref, b.push.img, remote.WithContext(ctx), remote.WithAuth(in.auth), remote.WithTransport(tr)); err != nil {
		b.fail(run, s, mPush, fmt.Errorf("push %s: %w", ref, err))
		return
	}
	b.record(mPush, s.name, run, time.Since(t0).Seconds(), "s")
}

// probePush starts a blob upload through host and returns why pushing is
// not available ("" when the upload was accepted).
func probePush(ctx context.Context, host, repo string) (string, error) {
	u := fmt.Sprintf("http://%s/v2/%s/blobs/uploads/", host, repo)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, http.NoBody)
	if err != nil {
		return "", fmt.Errorf("probe push: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("probe push: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err != nil {
		return "", fmt.Errorf("probe push: read body: %w", err)
	}
	if resp.StatusCode == http.StatusAccepted {
		return "", nil
	}
	why := strconv.Itoa(resp.StatusCode)
	var oci struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
		why += " " + oci.Errors[0].Code
	}
	return why, nil
}

// pullImage pulls img by tag from host like a client does: manifest,
// config, then every layer read to the end (go-containerregistry checks
// each digest), parallel layers at a time, on fresh connections.
func pullImage(ctx context.Context, host string, auth authn.Authenticator, img *benchImage, parallel int) (time.Duration, error) {
	ref, err := name.ParseReference(host+"/"+img.ref, name.Insecure)
	if err != nil {
		return 0, fmt.Errorf("parse reference: %w", err)
	}
	tr := newTransport()
	defer tr.CloseIdleConnections()
	t0 := time.Now()
	ri, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(tr))
	if err != nil {
		return 0, fmt.Errorf("pull %s: %w", ref, err)
	}
	d, err := ri.Digest()
	if err != nil {
		return 0, fmt.Errorf("pull %s: digest: %w", ref, err)
	}
	if d.String() != img.digest {
		return 0, fmt.Errorf("pull %s: digest %s, want %s", ref, d, img.digest)
	}
	if _, err := ri.RawConfigFile(); err != nil {
		return 0, fmt.Errorf("pull %s: config: %w", ref, err)
	}
	layers, err := ri.Layers()
	if err != nil {
		return 0, fmt.Errorf("pull %s: layers: %w", ref, err)
	}
	var g errgroup.Group
	g.SetLimit(parallel)
	for _, l := range layers {
		g.Go(func() error { return readLayer(l) })
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("pull %s: %w", ref, err)
	}
	return time.Since(t0), nil
}

// readLayer reads a layer's blob to the end.
func readLayer(l v1.Layer) error {
	d, err := l.Digest()
	if err != nil {
		return fmt.Errorf("layer digest: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	_, err = io.Copy(io.Discard, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	return nil
}

// newTransport is a client's own connection pool, as a separate pull
// process would have.
func newTransport() *http.Transport {
	if t, ok := remote.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	return http.DefaultTransport.(*http.Transport).Clone() //nolint:forcetypeassert // the standard library's
}

// upstreamRequests sums the emulator's registry and S3 counters.
func upstreamRequests(emu *ecrtest.Emulator) int {
	n := 0
	for _, k := range registryKinds {
		n += emu.Count(k)
	}
	return n
}

// record stores a value and logs it.
func (b *bench) record(metric, system string, run int, v float64, unit string) {
	b.res.add(metric, system, run, v)
	fmt.Fprintf(b.log, "run %d %-12s %-22s %.3f %s\n", run+1, system, metric, v, unit)
}

// recordRSS stores the peak memory of the instance's processes so far.
func (b *bench) recordRSS(run int, s system, in *instance, metric string) {
	n, err := peakRSS(in.pids())
	if err != nil {
		b.fail(run, s, metric, err)
		return
	}
	b.record(metric, s.name, run, float64(n)/(1<<20), "MiB")
}

// fail records an error of one scenario; the benchmark goes on.
func (b *bench) fail(run int, s system, what string, err error) {
	err = fmt.Errorf("run %d, %s, %s: %w", run+1, s.name, what, err)
	fmt.Fprintln(b.log, err)
	b.res.fail(err)
}

// stop stops an instance and records a failure to stop.
func (b *bench) stop(run int, s system, in *instance) {
	if err := in.stop(); err != nil {
		b.fail(run, s, "stop", err)
	}
}
