package main

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// runGC runs the proxy binary's garbage-collect on the cache's
// configuration file, with no AWS credentials, region or endpoints in the
// environment, and returns its output and exit code.
func runGC(t *testing.T, c *lruCache, flags ...string) (string, int) {
	t.Helper()
	args := append(append([]string{"garbage-collect"}, flags...), c.cfgPath)
	cmd := exec.CommandContext(t.Context(), proxyBinary, args...) //nolint:gosec // the test's own binary
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, hermeticEnv(t)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("garbage-collect %v: %v\n%s", flags, err, out)
		return "", -1
	}
}

// mustGC runs garbage-collect and fails the test unless it exits 0.
func mustGC(t *testing.T, c *lruCache, flags ...string) string {
	t.Helper()
	out, rc := runGC(t, c, flags...)
	if rc != 0 {
		t.Fatalf("garbage-collect %v: exit status %d, want 0:\n%s", flags, rc, out)
	}
	t.Logf("garbage-collect %v:\n%s", flags, out)
	return out
}

// files lists every file and directory under dir with its size (files)
// or -1 (directories).
func files(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			out[rel] = -1
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[rel] = fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGarbageCollectEmptyCache: garbage-collect on a cache that holds
// nothing yet exits 0 with every flag, says there is nothing to collect,
// and writes nothing. (distribution's command fails there: "Path not
// found: /docker/registry/v2/repositories", exit status 1.)
func TestGarbageCollectEmptyCache(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	c := newLRUCache(t, emu, "8m")
	for _, flags := range [][]string{nil, {"--dry-run"}, {"--delete-untagged"}, {"--dry-run", "--delete-untagged"}} {
		out := mustGC(t, c, flags...)
		if !strings.Contains(out, "nothing to collect") {
			t.Errorf("garbage-collect %v on an empty cache: output %q does not say there is nothing to collect", flags, out)
		}
	}
	if out := mustGC(t, c, "--quiet"); out != "" {
		t.Errorf("garbage-collect --quiet printed %q", out)
	}
	if got := files(t, c.dir); len(got) != 1 {
		t.Errorf("garbage-collect wrote into the empty cache: %v", slices.Sorted(maps.Keys(got)))
	}
	if n := emu.Counts(); len(n) != 0 {
		t.Errorf("garbage-collect reached the emulator: %v", n)
	}
}

// TestGarbageCollectNoBlobData: repositories without any blob data (pulls
// that failed after the tag was resolved, or a cache whose blobs were all
// larger than maxsize) are nothing to collect either; blob data without
// repositories is left to distribution, which fails.
func TestGarbageCollectNoBlobData(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "config.yml")
	y := "version: 0.1\nstorage:\n  lrufilesystem:\n    rootdirectory: " + root + "\n    maxsize: 8m\n"
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(root, "docker", "registry", "v2")
	mkdir := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(v2, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, want bool) {
		t.Helper()
		where, empty := emptyStorage(ctx, []string{cfg})
		if empty != want {
			t.Errorf("%s: empty = %v, want %v", when, empty, want)
		}
		if !strings.Contains(where, "lrufilesystem at "+root) {
			t.Errorf("%s: storage described as %q", when, where)
		}
	}
	check("missing root", true)
	mkdir("repositories/team/app/_manifests/tags/1/current")
	mkdir("repositories/team/app/_uploads/0b0b")
	check("repositories only", true)
	mkdir("blobs/sha256/ab")
	check("empty blob directories", true)
	mkdir("blobs/sha256/ab/ab01")
	if err := os.WriteFile(filepath.Join(v2, "blobs/sha256/ab/ab01/data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("blob data", false)

	t.Setenv("REGISTRY_CONFIGURATION_PATH", cfg)
	if _, empty := emptyStorage(ctx, nil); empty {
		t.Error("REGISTRY_CONFIGURATION_PATH: blob data reported as empty")
	}
	for _, bad := range [][]string{{filepath.Join(t.TempDir(), "missing.yml")}} {
		if _, empty := emptyStorage(ctx, bad); empty {
			t.Errorf("%v: reported empty, want the error left to distribution", bad)
		}
	}
}

// TestGarbageCollectDryRun: on a cache filled through the proxy (stopped),
// garbage-collect --dry-run with the proxy's own configuration file exits
// 0, needs no AWS credentials nor ECR, and deletes nothing.
func TestGarbageCollectDryRun(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	a := seedLRUImage(t, emu, "team/a:1", 2, 256<<10)
	b := seedLRUImage(t, emu, "team/b:1", 1, 256<<10)
	c := newLRUCache(t, emu, "8m")
	p := c.start(t)
	mustPull(t, p, a.ref, a.want.digest)
	mustPull(t, p, b.ref, b.want.digest)
	stop(t, p)

	before := files(t, c.dir)
	if err := emu.Down(); err != nil {
		t.Fatal(err)
	}
	emu.ResetCounts()
	out := mustGC(t, c, "--dry-run")
	for _, d := range append(slices.Clone(a.blobs), b.blobs...) {
		if !strings.Contains(out, "marking") || !strings.Contains(out, d) {
			t.Errorf("dry run output does not mark %s", d)
		}
	}
	if !strings.Contains(out, "0 blobs and 0 manifests eligible for deletion") {
		t.Errorf("dry run on a fully tagged cache: output does not say 0 blobs and 0 manifests eligible")
	}
	mustGC(t, c, "--dry-run", "--delete-untagged")
	if diff := cmp.Diff(before, files(t, c.dir)); diff != "" {
		t.Errorf("garbage-collect --dry-run changed the cache (-before +after):\n%s", diff)
	}
	if n := emu.Counts(); len(n) != 0 {
		t.Errorf("garbage-collect reached the emulator: %v", n)
	}
}

// TestGarbageCollectDeleteUntagged: a tag moved upstream leaves the old
// image untagged in the cache; garbage-collect --delete-untagged (proxy
// stopped) deletes its blobs, keeps those of every tagged image, and a new
// proxy serves the tagged images from the cache without fetching a blob,
// and the untagged one, by digest, by fetching it again.
func TestGarbageCollectDeleteUntagged(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	old := seedLRUImage(t, emu, "team/app:1", 2, 256<<10)
	other := seedLRUImage(t, emu, "team/other:1", 1, 256<<10)
	c := newLRUCache(t, emu, "8m")
	p := c.start(t)
	mustPull(t, p, old.ref, old.want.digest)
	mustPull(t, p, other.ref, other.want.digest)
	// team/app:1 moves to a new image upstream; the proxy follows it.
	cur := seedLRUImage(t, emu, "team/app:1", 2, 256<<10)
	mustPull(t, p, cur.ref, cur.want.digest)
	stop(t, p)
	for _, im := range []image{old, other, cur} {
		if _, missing := c.cached(t, im.blobs); len(missing) > 0 {
			t.Fatalf("%s@%s not cached whole before garbage-collect: %v missing", im.ref, im.want.digest, missing)
		}
	}

	mustGC(t, c, "--delete-untagged")

	if _, missing := c.cached(t, old.blobs); len(missing) != len(old.blobs) {
		t.Errorf("untagged %s: %d of %d blobs still cached after --delete-untagged", old.want.digest, len(old.blobs)-len(missing), len(old.blobs))
	}
	for _, im := range []image{other, cur} {
		if _, missing := c.cached(t, im.blobs); len(missing) > 0 {
			t.Errorf("tagged %s (%s): blobs %v deleted", im.ref, im.want.digest, missing)
		}
	}

	// Garbage-collect again: nothing more to delete.
	out := mustGC(t, c, "--delete-untagged")
	if !strings.Contains(out, "0 blobs and 0 manifests eligible for deletion") {
		t.Errorf("second garbage-collect: output does not say 0 blobs and 0 manifests eligible")
	}

	p = c.start(t)
	for _, im := range []image{cur, other} {
		if n := pullCounting(t, emu, p, im.ref, im); n != 0 {
			t.Errorf("pull %s after garbage-collect: %d blob GETs from ECR, want 0 (all counts %v)", im.ref, n, emu.Counts())
		}
	}
	if n := pullCounting(t, emu, p, old.repo()+"@"+old.want.digest, old); n == 0 {
		t.Errorf("pull of the collected %s: no blob GET from ECR", old.want.digest)
	}
}
