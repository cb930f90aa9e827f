package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// TestVerifyRemovesCorruptBlob stores three blobs through distribution's
// storage on an lrufilesystem cache, changes one byte of one on disk (same
// size: the proxy's size check cannot see it), and runs verify on the
// cache's configuration: --dry-run reports it and fails; verify removes it
// alone and says so.
func TestVerifyRemovesCorruptBlob(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "config.yml")
	y := "version: 0.1\nstorage:\n  lrufilesystem:\n    rootdirectory: " + root + "\n    maxsize: 8m\n"
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := lrufs.FromParameters(map[string]any{"rootdirectory": root, "maxsize": "8m"})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := storage.NewRegistry(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	named, err := reference.WithName("team/app")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := ns.Repository(ctx, named)
	if err != nil {
		t.Fatal(err)
	}
	var digests []digest.Digest
	for i := range 3 {
		desc, err := repo.Blobs(ctx).Put(ctx, "application/octet-stream", bytes.Repeat([]byte{byte('a' + i)}, 3000+i))
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, desc.Digest)
	}
	dataFile := func(d digest.Digest) string {
		return filepath.Join(root, "docker/registry/v2/blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
	}
	bad := dataFile(digests[1])
	b, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	b[100] = 'X'
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := runVerify(ctx, &out, []string{cfg}, true); !errors.Is(err, errCorruptFound) {
		t.Errorf("verify --dry-run: %v, want errCorruptFound", err)
	}
	t.Logf("verify --dry-run:\n%s", out.String())
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("--dry-run removed the corrupt blob: %v", err)
	}

	out.Reset()
	t.Setenv("REGISTRY_CONFIGURATION_PATH", cfg)
	if err := runVerify(ctx, &out, nil, false); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	t.Logf("verify:\n%s", out.String())
	for _, want := range []string{"corrupt: " + digests[1].String(), "verified 3 blobs", "1 corrupt, 1 removed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q", want)
		}
	}
	if _, err := os.Stat(filepath.Dir(bad)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the corrupt blob's directory after verify: %v, want removed", err)
	}
	for _, d := range []digest.Digest{digests[0], digests[2]} {
		if _, err := os.Stat(dataFile(d)); err != nil {
			t.Errorf("intact blob %s: %v", d, err)
		}
	}
	if _, err := repo.Blobs(ctx).Stat(ctx, digests[1]); err == nil {
		t.Error("distribution still finds the removed blob")
	}

	out.Reset()
	if err := runVerify(ctx, &out, nil, false); err != nil || !strings.Contains(out.String(), "verified 2 blobs") {
		t.Errorf("second verify: %v\n%s", err, out.String())
	}
}
