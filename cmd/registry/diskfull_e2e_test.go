package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// tmpfsLauncher runs a command in a private mount namespace with a tmpfs
// of size mounted on dir: the proxy gets a small disk of its own, which
// the test reaches through /proc/<pid>/root.
func tmpfsLauncher(dir, size string) []string {
	return []string{"unshare", "-m", "sh", "-c", `mount -t tmpfs -o size=` + size + ` tmpfs "$0" && exec "$@"`, dir}
}

// requireTmpfsNamespace skips the test unless this process may mount a
// tmpfs in a private mount namespace (root, with unshare available).
func requireTmpfsNamespace(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a full disk is a tmpfs mounted in a private mount namespace (unshare -m), which needs root; CI runs as root")
	}
	probe := append(tmpfsLauncher(t.TempDir(), "1m"), "true")
	if out, err := exec.Command(probe[0], probe[1:]...).CombinedOutput(); err != nil { //nolint:gosec // a fixed command
		t.Skipf("cannot mount a tmpfs in a private mount namespace here (%v): %s", err, out)
	}
}

// startOnTmpfs starts the proxy with cfgPath on a tmpfs of size mounted
// on dir, its cache directory, and returns it settled.
func startOnTmpfs(t *testing.T, emu *ecrtest.Emulator, cfgPath, dir, size string) *proxytest.Proxy {
	t.Helper()
	p, err := proxytest.Start(t.Context(), proxytest.Config{
		Binary:   proxyBinary,
		Args:     []string{"serve", cfgPath},
		Env:      append(hermeticEnv(t), emu.Env()...),
		Launcher: tmpfsLauncher(dir, size),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop proxy: %v", err)
		}
		if t.Failed() {
			t.Logf("proxy output:\n%s", p.Logs())
		}
	})
	settle(t, p, true)
	return p
}

// pullAll pulls im through p with n concurrent clients, each verifying
// every byte it reads, and reports the failures.
func pullAll(t *testing.T, p *proxytest.Proxy, im image, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := pullVerified(t, p, im.ref, im); err != nil {
				t.Errorf("client %d pulling %s: %v", i, im.ref, err)
			}
		})
	}
	wg.Wait()
}

// TestFullDiskStillServes runs the proxy on a 4 MiB tmpfs (cache and
// spool): a layer larger than the free space, a layer whose spool meets a
// disk filled behind the proxy's back, and a whole image (tag, manifest,
// blobs) first pulled on the full disk, reach every one of several
// concurrent clients whole and verified; nothing of them is left on the
// disk; a warning names each, and ecrproxy_cache_uncached_total counts
// them. A push on the full disk reaches ECR whole, only not cached.
func TestFullDiskStillServes(t *testing.T) {
	requireTmpfsNamespace(t)
	emu := newPushEmulator(t) // its S3 answers pullDirect too
	big := seedLRUImage(t, emu, "team/big:1", 1, 6*mib)
	fill := seedLRUImage(t, emu, "team/fill:1", 1, 2*mib)
	late := seedLRUImage(t, emu, "team/late:1", 1, 256<<10)
	c := newLRUCache(t, emu, "100m") // the bound is not what refuses
	p := startOnTmpfs(t, emu, c.cfgPath, c.dir, "4m")
	disk := filepath.Join("/proc", strconv.Itoa(p.PID()), "root", c.dir) // the tmpfs, as the proxy sees it

	t.Run("larger than the free space", func(t *testing.T) {
		pullAll(t, p, big, 4)
		// Refused when its room was reserved, before a byte was spooled.
		checkUncached(t, p, disk, big, "not enough free space", 1)
	})

	t.Run("disk filled while the spool is written", func(t *testing.T) {
		release := emu.StallBlobs(512 << 10)
		defer release()
		done := make(chan struct{})
		go func() {
			defer close(done)
			pullAll(t, p, fill, 4)
		}()
		// The layer's spool holds its first 512 KiB; then the disk fills.
		if !pollUntil(t, func() bool { return spoolBytes(t, disk) == 512<<10 }) {
			t.Fatalf("the layer's spool never reached 512 KiB (spools hold %d bytes)", spoolBytes(t, disk))
		}
		fillDisk(t, filepath.Join(disk, "filler"))
		release()
		<-done
		checkUncached(t, p, disk, fill, "write spool", 2)
	})

	t.Run("a new image on the full disk", func(t *testing.T) {
		// Neither the tag, the manifest nor the blobs of an image never
		// pulled before can be stored: distribution's proxy failed the
		// manifest GET with them (503), now every client gets them all.
		fillDisk(t, filepath.Join(disk, "filler2"))
		pullAll(t, p, late, 2)
		for _, what := range [][]string{
			{"cannot cache tag", "team/late", "tag=1"},
			{"cannot cache manifest", "team/late", late.want.digest},
		} {
			if _, err := p.WaitForLog(t.Context(), append(what, "reason=disk_full", "no space left on device")...); err != nil {
				t.Error(err)
			}
		}
		// big, fill, then late's tag, manifest and layer at least.
		checkUncached(t, p, disk, late, "", 5)
	})

	t.Run("a push on the full disk", func(t *testing.T) {
		img, err := ecrtest.RandomImage(1, 256<<10, types.OCIManifestSchema1)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(proxyRef(t, p, "team/pushed:1"), img, remote.WithContext(t.Context())); err != nil {
			t.Fatalf("push through the proxy on a full disk: %v", err)
		}
		want, err := readImage(img)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, pullDirect(t, emu, "team/pushed:1"), cmp.AllowUnexported(pulled{})); diff != "" {
			t.Errorf("ECR holds another image than the one pushed (-pushed +ecr):\n%s", diff)
		}
		if _, err := p.WaitForLog(t.Context(), "write-through: not caching this upload", "team/pushed"); err != nil {
			t.Error(err)
		}
	})
}

// checkUncached checks what an uncached layer of im leaves: no spool, no
// blob data, no upload; the warning naming it and its cause; the metric
// at least count.
func checkUncached(t *testing.T, p *proxytest.Proxy, disk string, im image, cause string, count float64) {
	t.Helper()
	layer := im.want.layers[0]
	if _, err := p.WaitForLog(t.Context(), "cannot cache blob", layer, "reason=disk_full", cause); err != nil {
		t.Error(err)
	}
	if !pollUntil(t, func() bool { return len(leftOnDisk(t, disk, layer)) == 0 }) {
		t.Errorf("left on the disk: %v", leftOnDisk(t, disk, layer))
	}
	if got := waitForMetric(t, p, "ecrproxy_cache_uncached_total", `reason="disk_full"`, func(v float64) bool { return v >= count }); got < count {
		t.Errorf(`ecrproxy_cache_uncached_total{reason="disk_full"} = %v, want at least %v`, got, count)
	}
}

// spoolBytes sums the sizes of the download spools on disk.
func spoolBytes(t *testing.T, disk string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(disk, "ecr-proxy-spool", "ecr-proxy-blob-*"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// leftOnDisk lists what a download of layer may have left under disk:
// spools, uploads, and the layer's blob data.
func leftOnDisk(t *testing.T, disk, layer string) []string {
	t.Helper()
	var left []string
	spools, err := filepath.Glob(filepath.Join(disk, "ecr-proxy-spool", "*"))
	if err != nil {
		t.Fatal(err)
	}
	left = append(left, spools...)
	uploads, err := filepath.Glob(filepath.Join(disk, "docker", "registry", "v2", "repositories", "*", "*", "_uploads", "*"))
	if err != nil {
		t.Fatal(err)
	}
	left = append(left, uploads...)
	alg, h, _ := strings.Cut(layer, ":")
	data := filepath.Join(disk, "docker", "registry", "v2", "blobs", alg, h[:2], h)
	if _, err := os.Stat(data); err == nil {
		left = append(left, data)
	}
	return left
}

// fillDisk writes file until the filesystem is full.
func fillDisk(t *testing.T, file string) {
	t.Helper()
	f, err := os.Create(file) //nolint:gosec // the test's own path
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(fmt.Errorf("fill the disk: %w", err))
			}
			return
		}
	}
}
