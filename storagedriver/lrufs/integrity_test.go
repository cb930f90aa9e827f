package lrufs

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// truncate cuts the data file of the blob at p to half its size behind the
// driver's back, as a disk error or an operator's mistake would.
func (e *testEnv) truncate(p string) {
	e.t.Helper()
	full := filepath.Join(e.root, filepath.FromSlash(p))
	fi, err := os.Stat(full)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.Truncate(full, fi.Size()/2); err != nil {
		e.t.Fatal(err)
	}
}

// TestTruncatedBlobNotServed truncates cached blobs on disk and opens each
// the way one of the serving paths does: every one finds the blob missing
// (so distribution's proxy fetches it again), its directory is deleted,
// it leaves the index, and the corrupt counter counts it. Before, the
// truncated bytes were served as the whole blob.
func TestTruncatedBlobNotServed(t *testing.T) {
	ctx := context.Background()
	opens := map[string]func(t *testing.T, e *testEnv, p string, d digest.Digest) error{
		"Stat": func(_ *testing.T, e *testEnv, p string, _ digest.Digest) error {
			_, err := e.d.Stat(ctx, p)
			return err
		},
		"Reader": func(_ *testing.T, e *testEnv, p string, _ digest.Digest) error {
			rc, err := e.d.Reader(ctx, p, 0)
			if err == nil {
				_ = rc.Close()
			}
			return err
		},
		"GetContent": func(_ *testing.T, e *testEnv, p string, _ digest.Digest) error {
			_, err := e.d.GetContent(ctx, p)
			return err
		},
		"OpenLinked": func(t *testing.T, e *testEnv, _ string, d digest.Digest) error {
			f, release, err := e.d.OpenLinked(ctx, "team/app", d)
			if err == nil {
				_ = f.Close()
				release()
				return nil
			}
			if !errors.Is(err, ErrNotLinked) {
				t.Errorf("OpenLinked: %v, want ErrNotLinked", err)
			}
			return notFound("")
		},
	}
	for name, open := range opens {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			e := newTestEnv(t, root, 1<<20, 1, newFakeClock())
			var digests []digest.Digest
			for i := range 2 {
				content := blobContent(i, 1000)
				digests = append(digests, digest.FromBytes(content))
				if err := e.d.Adopt(ctx, "team/app", digests[i], spoolFile(t, root, content), int64(len(content))); err != nil {
					t.Fatal(err)
				}
			}
			p, keep := dataPathOf(blobContent(0, 1000)), dataPathOf(blobContent(1, 1000))
			e.truncate(p)
			if err := open(t, e, p, digests[0]); !isNotFound(err) {
				t.Fatalf("%s of a truncated blob: %v, want not found", name, err)
			}
			if _, err := os.Stat(filepath.Dir(filepath.Join(root, p))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the truncated blob's directory is still there: %v", err)
			}
			if got := e.metric("ecrproxy_cache_corrupt_blobs_total"); got != 1 {
				t.Errorf("corrupt counter %v, want 1", got)
			}
			if err := open(t, e, keep, digests[1]); err != nil {
				t.Errorf("%s of an intact blob: %v", name, err)
			}
			checkIndexMatchesDisk(t, e)
		})
	}
}

// TestTruncatedBlobRefetchedThroughDistribution serves a truncated blob
// through distribution's own blob server over the driver: it answers that
// the blob is unknown (the proxy then fetches it) and writes nothing,
// where it used to answer 200 with the cut body.
func TestTruncatedBlobRefetchedThroughDistribution(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	e := newTestEnv(t, root, 1<<20, 1, newFakeClock())
	content := blobContent(3, 4096)
	d := digest.FromBytes(content)
	if err := e.d.Adopt(ctx, "team/app", d, spoolFile(t, root, content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	ns, err := storage.NewRegistry(ctx, e.d, storage.DisableDigestResumption)
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
	e.truncate(dataPathOf(content))
	w := httptest.NewRecorder()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v2/team/app/blobs/"+d.String(), nil)
	err = repo.Blobs(ctx).ServeBlob(ctx, w, r, d)
	if !errors.Is(err, distribution.ErrBlobUnknown) {
		t.Errorf("ServeBlob of a truncated blob: %v, want ErrBlobUnknown; wrote %d, %d bytes", err, w.Code, w.Body.Len())
	}
	if w.Body.Len() != 0 {
		t.Errorf("ServeBlob wrote %d bytes of a truncated blob", w.Body.Len())
	}
}

// TestSizeCheckSparesWrites: a blob whose data file is being rewritten in
// place (its size changing under a write in progress) is not mistaken for
// a corrupt one.
func TestSizeCheckSparesWrites(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 1<<20, 1, newFakeClock())
	content := blobContent(4, 1000)
	p := e.mustPushLayer(content)
	w, err := e.d.Writer(ctx, p, false) // truncates, as the filesystem driver does
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content[:10]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Stat(ctx, p); err != nil {
		t.Fatalf("Stat during a write: %v; want the partial file", err)
	}
	if _, err := w.Write(content[10:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.read(p); !bytes.Equal(got, content) {
		t.Errorf("read %d bytes after the rewrite", len(got))
	}
	if got := e.metric("ecrproxy_cache_corrupt_blobs_total"); got != 0 {
		t.Errorf("corrupt counter %v, want 0", got)
	}
	checkIndexMatchesDisk(t, e)
}

// TestVerifyDropsCorruptBlobs corrupts two cached blobs on disk (a byte
// changed at the same length, which the size check cannot see, and a
// truncation) and runs Verify: a dry run reports both and removes
// nothing; a real run removes both, keeps the rest, and leaves the index
// matching the disk.
func TestVerifyDropsCorruptBlobs(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, t.TempDir(), 1<<20, 1, newFakeClock())
	var paths []string
	for i := range 5 {
		paths = append(paths, e.mustPushLayer(blobContent(i, 1000+i)))
	}
	flipped := filepath.Join(e.root, filepath.FromSlash(paths[1]))
	b, err := os.ReadFile(flipped)
	if err != nil {
		t.Fatal(err)
	}
	b[500] ^= 0xff
	if err := os.WriteFile(flipped, b, 0o644); err != nil {
		t.Fatal(err)
	}
	e.truncate(paths[3])

	rep, err := e.d.Verify(ctx, VerifyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs != 5 || len(rep.Corrupt) != 2 || rep.Removed() != 0 {
		t.Errorf("dry run: %+v, want 5 blobs, 2 corrupt, none removed", rep)
	}
	for _, p := range paths {
		if !e.exists(p) {
			t.Errorf("dry run removed %s", p)
		}
	}

	var seen []digest.Digest
	rep, err = e.d.Verify(ctx, VerifyOptions{OnCorrupt: func(c CorruptBlob) { seen = append(seen, c.Digest) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs != 5 || rep.Removed() != 2 || len(seen) != 2 {
		t.Errorf("verify: %+v (reported %v), want 5 blobs, 2 removed", rep, seen)
	}
	for i, p := range paths {
		if want := i != 1 && i != 3; e.exists(p) != want {
			t.Errorf("blob %d exists %v, want %v", i, !want, want)
		}
	}
	checkIndexMatchesDisk(t, e)
	if got := e.metric("ecrproxy_cache_corrupt_blobs_total"); got != 2 {
		t.Errorf("corrupt counter %v, want 2", got)
	}
}
