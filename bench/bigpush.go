package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/stream"
)

// bigPush pushes one layer of size random bytes through ecr-proxy and
// reports the proxy's peak resident memory before and after: pushes are
// streamed, so the peak must not grow with the layer. The layer is
// generated while it is sent (go-containerregistry's streaming layer), so
// the benchmark itself holds none of it either.
func (l *lab) bigPush(ctx context.Context, w io.Writer, size int64) error {
	in, err := l.startECRProxy(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = in.stop() }()
	before, err := peakRSS(in.pids())
	if err != nil {
		return err
	}
	seed := [32]byte{1}
	layer := stream.NewLayer(io.NopCloser(io.LimitReader(rand.NewChaCha8(seed), size)))
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	ref, err := name.ParseReference(in.host+"/bench/bigpush:v1", name.Insecure)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithTransport(newTransport())); err != nil {
		return fmt.Errorf("push %s: %w", human(size), err)
	}
	elapsed := time.Since(t0)
	after, err := peakRSS(in.pids())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "| layer pushed through ecr-proxy | push time | proxy peak RSS before | proxy peak RSS after the push |\n|---|---|---|---|\n")
	fmt.Fprintf(w, "| %s | %.1f s | %.1f MiB | %.1f MiB |\n", human(size), elapsed.Seconds(), float64(before)/(1<<20), float64(after)/(1<<20))
	return nil
}

// human prints a byte count in binary units.
func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%g GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%g MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}
