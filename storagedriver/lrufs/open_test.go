package lrufs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// spoolFile writes content to a file beside the cache, as the
// pull-through spool does.
func spoolFile(t *testing.T, root string, content []byte) string {
	t.Helper()
	dir := filepath.Join(root, "spool")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "blob-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// TestAdoptIsACommit: a blob adopted from a spool file is, for
// distribution, a committed blob of the repository (Stat, Open, served),
// counted against the bound, evicting what is least recently used; a
// second repository adopting the same blob only gets a link; a blob that
// can never fit is refused and its file left in place.
func TestAdoptIsACommit(t *testing.T) {
	root := t.TempDir()
	clock := newFakeClock()
	e := newTestEnv(t, root, 3000, 1, clock)
	ctx := context.Background()
	ns, err := storage.NewRegistry(ctx, e.d, storage.DisableDigestResumption)
	if err != nil {
		t.Fatal(err)
	}
	stat := func(repo string, d digest.Digest) ([]byte, error) {
		t.Helper()
		named, err := reference.WithName(repo)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ns.Repository(ctx, named)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Blobs(ctx).Stat(ctx, d); err != nil {
			return nil, err
		}
		rc, err := r.Blobs(ctx).Open(ctx, d)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}

	old := blobContent(1, 1500)
	oldPath := e.mustPushLayer(old)
	clock.Advance(1)
	content := blobContent(2, 2000)
	d := digest.FromBytes(content)
	file := spoolFile(t, root, content)
	if err := e.d.Adopt(ctx, "team/app", d, file, int64(len(content))); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool file after Adopt: %v, want gone", err)
	}
	if got, err := stat("team/app", d); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("adopted blob through distribution: %d bytes, %v", len(got), err)
	}
	if e.exists(oldPath) {
		t.Error("the least recently used blob was not evicted to make room")
	}
	if s := e.d.Stats(); s.Bytes != int64(len(content)) || s.Blobs != 1 {
		t.Errorf("Stats after Adopt = %+v, want the adopted blob alone", s)
	}

	// The same blob through another repository: a link, nothing moved.
	file = spoolFile(t, root, content)
	if err := e.d.Adopt(ctx, "team/other", d, file, int64(len(content))); err != nil {
		t.Fatalf("Adopt of a cached blob: %v", err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool file of a cached blob: %v, want removed", err)
	}
	if got, err := stat("team/other", d); err != nil || !bytes.Equal(got, content) {
		t.Errorf("blob linked into a second repository: %d bytes, %v", len(got), err)
	}

	// Larger than the bound: refused, the file stays for the caller.
	big := blobContent(3, 4000)
	file = spoolFile(t, root, big)
	if err := e.d.Adopt(ctx, "team/app", digest.FromBytes(big), file, int64(len(big))); err == nil {
		t.Error("Adopt of a blob larger than maxsize succeeded")
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("spool file after a refused Adopt: %v, want left in place", err)
	}
	if _, err := stat("team/app", digest.FromBytes(big)); err == nil {
		t.Error("a refused blob is linked")
	}
}

// TestOpenLinked: a blob opens only through a repository that links it,
// and opening it is a use.
func TestOpenLinked(t *testing.T) {
	root := t.TempDir()
	clock := newFakeClock()
	e := newTestEnv(t, root, 1<<20, 1, clock)
	ctx := context.Background()
	content := blobContent(4, 1000)
	d := digest.FromBytes(content)
	if err := e.d.Adopt(ctx, "team/app", d, spoolFile(t, root, content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	f, release, err := e.d.OpenLinked(ctx, "team/app", d)
	if err != nil {
		t.Fatalf("OpenLinked: %v", err)
	}
	got, err := io.ReadAll(f)
	_ = f.Close()
	release()
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("read %d bytes, %v", len(got), err)
	}
	if _, _, err := e.d.OpenLinked(ctx, "team/other", d); !errors.Is(err, ErrNotLinked) {
		t.Errorf("OpenLinked through a repository without the link: %v, want ErrNotLinked", err)
	}
	if _, _, err := e.d.OpenLinked(ctx, "team/app", digest.FromString("absent")); !errors.Is(err, ErrNotLinked) {
		t.Errorf("OpenLinked of an absent blob: %v, want ErrNotLinked", err)
	}
}
