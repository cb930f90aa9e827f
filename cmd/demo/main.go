// Command demo shows ecr-proxy working, offline: it starts the project's
// ECR emulator, builds and starts the proxy in front of it, pushes an
// image into the emulated ECR, pulls it through the proxy cold and then
// warm, and prints what each pull cost.
//
//	go run ./cmd/demo
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

func main() {
	layers := flag.Int("layers", 4, "layers in the demo image")
	size := flag.Int64("layer-size", 16<<20, "bytes per layer")
	keep := flag.Bool("keep", false, "keep the proxy running after the demo, until interrupted")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *layers, *size, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, layers int, size int64, keep bool) error {
	logrus.SetOutput(io.Discard) // the emulator's embedded registry logs globally
	dir, err := os.MkdirTemp("", "ecr-proxy-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(out, "1. starting the ECR emulator on loopback")
	emu, err := ecrtest.Start()
	if err != nil {
		return err
	}
	defer emu.Close()
	fmt.Fprintf(out, "   registry %s, AWS API %s, region %s\n", emu.RegistryURL(), emu.APIURL(), emu.Region())

	fmt.Fprintf(out, "2. pushing team/app:1.0 (%d × %s random layers) into the emulated ECR\n", layers, human(size))
	img, err := pushImage(ctx, emu, layers, size)
	if err != nil {
		return err
	}

	fmt.Fprintln(out, "3. building and starting ecr-proxy (go build ./cmd/registry)")
	proxy, err := startProxy(ctx, out, emu, dir)
	if err != nil {
		return err
	}
	defer func() { _ = proxy.Stop() }()

	fmt.Fprintf(out, "4. pulling %s/team/app:1.0 through the proxy, cold then warm\n\n", proxy.Addr)
	if err := pullTable(ctx, out, emu, proxy, img); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nThe warm pulls read every blob from the proxy's disk cache: no blob reached ECR or S3.")
	if keep {
		fmt.Fprintf(out, "\nThe proxy keeps running: try `crane pull --insecure %s/team/app:1.0 app.tar`. Ctrl-C stops it.\n", proxy.Addr)
		<-ctx.Done()
	}
	return nil
}

// pushImage pushes a random image of layers layers of size bytes to the
// emulator as team/app:1.0.
func pushImage(ctx context.Context, emu *ecrtest.Emulator, layers int, size int64) (v1.Image, error) {
	img, err := ecrtest.RandomImage(layers, size)
	if err != nil {
		return nil, err
	}
	user, pass, err := emu.Token()
	if err != nil {
		return nil, err
	}
	ref, err := name.ParseReference(emu.RegistryHost()+"/team/app:1.0", name.Insecure)
	if err != nil {
		return nil, err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		return nil, fmt.Errorf("push to the emulator: %w", err)
	}
	return img, nil
}

// startProxy builds the proxy into dir and starts it in front of emu,
// with the emulator's AWS environment and no AWS files of the user's.
func startProxy(ctx context.Context, out io.Writer, emu *ecrtest.Emulator, dir string) (*proxytest.Proxy, error) {
	bin, err := proxytest.Build(ctx, dir)
	if err != nil {
		return nil, err
	}
	cfg, err := proxytest.WriteConfig(dir, proxytest.ConfigOptions{
		RemoteURL: emu.RegistryURL(), Region: emu.Region(), RootDirectory: filepath.Join(dir, "cache"),
	})
	if err != nil {
		return nil, err
	}
	env := append([]string{
		"HOME=" + dir,
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none"),
	}, emu.Env()...)
	proxy, err := proxytest.Start(ctx, proxytest.Config{Binary: bin, Args: []string{"serve", cfg}, Env: env})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "   proxy on %s, metrics on http://%s/metrics\n", proxy.URL(), proxy.DebugAddr)
	if line, err := proxy.WaitForLog(ctx, `msg="AWS identity"`); err == nil {
		_, id, _ := strings.Cut(line, `msg="AWS identity" `)
		fmt.Fprintf(out, "   AWS identity: %s\n", id)
	}
	return proxy, nil
}

// pullTable pulls img through the proxy cold, warm, and warm by digest,
// and prints what each pull cost at the emulator.
func pullTable(ctx context.Context, out io.Writer, emu *ecrtest.Emulator, proxy *proxytest.Proxy, img v1.Image) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pull\ttime\tbytes\tECR blob GETs\tS3 GETs\tmanifest GETs\ttoken mints\t")
	for _, label := range []string{"cold", "warm", "warm by digest"} {
		emu.ResetCounts()
		target := proxy.Addr + "/team/app:1.0"
		if label == "warm by digest" {
			d, err := img.Digest()
			if err != nil {
				return err
			}
			target = proxy.Addr + "/team/app@" + d.String()
		}
		start := time.Now()
		n, err := pull(ctx, target)
		if err != nil {
			return fmt.Errorf("%s pull: %w", label, err)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n", label, time.Since(start).Round(time.Millisecond), human(n),
			emu.Count(ecrtest.KindBlobGET), emu.Count(ecrtest.KindS3GET), emu.Count(ecrtest.KindManifestGET), emu.Count(ecrtest.KindTokenMint))
	}
	return tw.Flush()
}

// pull reads the image and all its layers, returning the bytes read.
func pull(ctx context.Context, target string) (int64, error) {
	ref, err := name.ParseReference(target, name.Insecure)
	if err != nil {
		return 0, err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return total, err
		}
		n, err := io.Copy(io.Discard, rc)
		total += n
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
