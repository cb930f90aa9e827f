package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// profileSeconds is how long one CPU profile of the proxy runs.
const profileSeconds = 4

// workload is one thing the proxy is profiled doing.
type workload struct {
	name string
	// prepare runs on the fresh instance before profiling (warming it).
	prepare func(ctx context.Context, in *instance) error
	// once runs once per instance (a cold pull); each repetition then
	// starts a fresh instance. Otherwise work repeats until the profile
	// ends.
	once bool
	work func(ctx context.Context, in *instance, i int) error
}

// profiles runs each workload against fresh ecr-proxy instances while
// taking CPU profiles from its debug server, writes them to dir as
// <workload>-<n>.pprof, and prints `go tool pprof -top` of each workload
// (its profiles merged).
func (b *bench) profiles(ctx context.Context, dir string, w io.Writer) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("profile directory: %w", err)
	}
	pull := func(img *benchImage) func(context.Context, *instance, int) error {
		return func(ctx context.Context, in *instance, _ int) error {
			_, err := pullImage(ctx, in.host, in.auth, img, b.p.parallel)
			return err
		}
	}
	warm := func(img *benchImage) func(context.Context, *instance) error {
		return func(ctx context.Context, in *instance) error { return pull(img)(ctx, in, 0) }
	}
	loads := []workload{
		{name: "cold-large", once: true, work: pull(b.large)},
		{name: "cold-small", once: true, work: pull(b.small)},
		{name: "warm-small", prepare: warm(b.small), work: pull(b.small)},
		{name: "tag-head", prepare: warm(b.small), work: b.tagHeads},
		{name: "push", work: b.pushRepeat},
	}
	for _, l := range loads {
		reps := 1
		if l.once {
			reps = 3
		}
		var files []string
		for n := range reps {
			f, err := b.profileOnce(ctx, dir, l, n)
			if err != nil {
				return fmt.Errorf("profile %s: %w", l.name, err)
			}
			files = append(files, f)
		}
		out, err := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof", "-top", "-nodecount=25"}, files...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pprof %s: %w\n%s", l.name, err, out)
		}
		fmt.Fprintf(w, "### %s\n\n```\n%s```\n\n", l.name, out)
	}
	return nil
}

// profileOnce starts a fresh ecr-proxy, prepares it, and profiles the
// workload for profileSeconds.
func (b *bench) profileOnce(ctx context.Context, dir string, l workload, n int) (string, error) {
	in, err := b.lab.startECRProxy(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = in.stop() }()
	if in.debug == "" {
		return "", errors.New("ecr-proxy has no debug server")
	}
	if l.prepare != nil {
		if err := l.prepare(ctx, in); err != nil {
			return "", err
		}
	}
	file := filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", l.name, n))
	profiled := make(chan error, 1)
	go func() { profiled <- fetchProfile(ctx, in.debug, file) }()
	// The profile starts when the debug server takes the request.
	deadline := time.Now().Add(profileSeconds * time.Second)
	for i := 0; ; i++ {
		if err := l.work(ctx, in, i); err != nil {
			return "", err
		}
		if l.once || time.Now().After(deadline) {
			break
		}
	}
	return file, <-profiled
}

// fetchProfile writes a CPU profile of the process behind debugAddr.
func fetchProfile(ctx context.Context, debugAddr, file string) error {
	u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debugAddr, profileSeconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET profile: %s", resp.Status)
	}
	f, err := os.Create(file) //nolint:gosec // a file the developer named
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

// tagHeads does 50 warm manifest HEADs by tag.
func (b *bench) tagHeads(ctx context.Context, in *instance, _ int) error {
	ref, err := name.ParseReference(in.host+"/"+b.small.ref, name.Insecure)
	if err != nil {
		return err
	}
	tr := newTransport() // kept across the HEADs, as a client pulling tag after tag does
	defer tr.CloseIdleConnections()
	puller, err := remote.NewPuller(remote.WithAuth(in.auth), remote.WithTransport(tr))
	if err != nil {
		return err
	}
	for range 50 {
		if _, err := puller.Head(ctx, ref); err != nil {
			return err
		}
	}
	return nil
}

// pushRepeat pushes the push image to a new repository each time.
func (b *bench) pushRepeat(ctx context.Context, in *instance, i int) error {
	repo := fmt.Sprintf("bench/profile-push-%d-%s", i, strings.ReplaceAll(time.Now().Format("150405.000"), ".", ""))
	ref, err := name.ParseReference(in.host+"/"+repo+":v1", name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, b.push.img, remote.WithContext(ctx), remote.WithAuth(in.auth), remote.WithTransport(newTransport()))
}
