package pushthrough

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// TestWriteThroughReservesRoom: a pushed blob's copy holds room under the
// cache's bound as it is written; one larger than the bound is pushed to
// ECR but not copied, one that fits is cached, and no reservation or
// spool is left either way.
func TestWriteThroughReservesRoom(t *testing.T) {
	t.Parallel()
	emu := ecrtest.New(t)
	user, pw, err := emu.Token()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	const maxSize = 1 << 20
	cache, err := lrufs.New(lrufs.Parameters{RootDirectory: filepath.Join(root, "cache"), MaxSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(root, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	ns, err := storage.NewRegistry(t.Context(), cache, storage.DisableDigestResumption, storage.EnableDelete)
	if err != nil {
		t.Fatal(err)
	}
	wt := NewWriteThrough(WithWriteThroughSpoolDir(spool))
	if _, err := wt.Init(t.Context(), ns, cache, nil); err != nil {
		t.Fatal(err)
	}
	gw := newGateway(t, emu.RegistryURL(), basicTransport{user, pw}, nil, WithWriteThrough(wt))
	host := strings.TrimPrefix(gw.URL, "http://")

	for _, tt := range []struct {
		repo       string
		size       int64
		wantCached bool
	}{
		{"team/big", 3 << 20, false},
		{"team/small", 300 << 10, true},
	} {
		img, err := ecrtest.RandomImage(1, tt.size, types.DockerManifestSchema2)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(host+"/"+tt.repo+":1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
			t.Fatalf("push %s: %v", tt.repo, err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		d, err := layers[0].Digest()
		if err != nil {
			t.Fatal(err)
		}
		if got := hasBlob(t, ns, tt.repo, digest.Digest(d.String())); got != tt.wantCached {
			t.Errorf("%s: layer cached = %t, want %t", tt.repo, got, tt.wantCached)
		}
		if r := cache.Reserved(); r != 0 {
			t.Errorf("%s: %d bytes still reserved after the push", tt.repo, r)
		}
		if s := cache.Stats(); s.Bytes > maxSize {
			t.Errorf("%s: cache holds %d bytes, over maxsize %d", tt.repo, s.Bytes, maxSize)
		}
		if entries, err := os.ReadDir(spool); err != nil || len(entries) != 0 {
			t.Errorf("%s: spool directory after the push: %d files, %v", tt.repo, len(entries), err)
		}
	}
}
