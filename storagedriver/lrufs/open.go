package lrufs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// repositoriesRoot is the directory of the repositories' links in
// distribution's layout (registry/storage/paths.go).
const repositoriesRoot = "/docker/registry/v2/repositories"

// ErrNotLinked is returned by OpenLinked when the repository does not
// link the blob, or its data is not on disk: the caller leaves the
// request to distribution.
var ErrNotLinked = errors.New("blob not linked into the repository")

// OpenLinked opens the data file of blob dgst when repository repo links
// it (its _layers link holds dgst, as distribution checks before serving a
// blob), so that a hit can be served from the file itself, by sendfile,
// rather than through distribution's buffered reader. Opening counts as a
// use; the blob is not evicted before release is called (and on Linux the
// open file stays readable even then). repo must be a valid repository
// name (distribution's reference grammar, so no "..").
//
// A data file of another size than the index holds (truncated or
// rewritten on disk) is dropped from the cache and reported as
// ErrNotLinked: distribution then finds the blob missing and fetches it
// again.
func (d *Driver) OpenLinked(ctx context.Context, repo string, dgst digest.Digest) (f *os.File, release func(), err error) {
	if err := dgst.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotLinked, err)
	}
	alg, hex := dgst.Algorithm().String(), dgst.Encoded()
	k, ok := keyOf(alg, hex[:2], hex)
	if !ok {
		return nil, nil, ErrNotLinked
	}
	link := path.Join(repositoriesRoot, repo, "_layers", alg, hex, "link")
	b, err := os.ReadFile(d.idx.fullPath(link))
	if err != nil || string(b) != dgst.String() {
		return nil, nil, ErrNotLinked
	}
	before, ok := d.idx.acquireRead(k)
	if !ok {
		return nil, nil, fmt.Errorf("%w: blob %s is being deleted", ErrNotLinked, k)
	}
	f, size, err := d.openData(ctx, k, before)
	if err != nil {
		d.idx.release(ctx, k)
		return nil, nil, err
	}
	d.idx.metrics.blobReads.Inc()
	if !d.idx.use(k) {
		d.idx.insert(ctx, k, size)
	}
	return f, func() { d.idx.release(ctx, k) }, nil
}

// openData opens the data file of k, on which the caller holds a reader's
// reference (taken when it saw the index as before), and checks its size
// against the index.
func (d *Driver) openData(ctx context.Context, k blobKey, before seen) (*os.File, int64, error) {
	f, err := os.Open(d.idx.fullPath(k.dataPath()))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			d.idx.forget(k.dataPath())
		}
		return nil, 0, fmt.Errorf("%w: %w", ErrNotLinked, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("%w: %w", ErrNotLinked, err)
	}
	if !fi.Mode().IsRegular() || !d.idx.sizeOK(ctx, k, before, fi.Size(), false) {
		_ = f.Close()
		return nil, 0, fmt.Errorf("%w: blob %s: data file does not match the cache index", ErrNotLinked, k)
	}
	return f, fi.Size(), nil
}

// Adopt moves file, a complete copy of blob dgst (size bytes) whose
// digest the caller has verified, into the cache, and links it into
// repository repo: the state distribution's blob writer leaves after a
// commit. It saves the second write and the second SHA-256 pass that
// copying the file through distribution's BlobWriter costs. file must be
// on the cache's filesystem (a rename); on any error it is left where it
// was, and the caller may still commit it through distribution. When the
// blob is already cached (through another repository), file is removed
// and only the link is written: either way, after success file is gone.
//
// Room reserved for file (Reserve) becomes the blob's: it is not evicted
// for, and no other writer can take it meanwhile. On success the
// reservation is gone; on error it is kept, for the caller to Unreserve.
func (d *Driver) Adopt(ctx context.Context, repo string, dgst digest.Digest, file string, size int64) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	alg, hex := dgst.Algorithm().String(), dgst.Encoded()
	k, ok := keyOf(alg, hex[:2], hex)
	if !ok {
		return fmt.Errorf("%s: digest %s has no blob path", DriverName, dgst)
	}
	data := d.idx.fullPath(k.dataPath())
	if fi, err := os.Stat(data); err == nil && fi.Size() == size {
		if err := os.Remove(file); err != nil {
			return err
		}
		d.Unreserve(file)
	} else if err := d.adoptData(ctx, k, file, data, size); err != nil {
		return err
	}
	link := path.Join(repositoriesRoot, repo, "_layers", alg, hex, "link")
	return d.PutContent(ctx, link, []byte(dgst.String()))
}

// adoptData makes room for the blob (beyond what was reserved for file),
// then renames file to its data path, after an fsync, as distribution's
// file writer commits.
func (d *Driver) adoptData(ctx context.Context, k blobKey, file, data string, size int64) error {
	d.idx.mu.Lock()
	reserved := d.idx.reservations[file]
	d.idx.mu.Unlock()
	if size > reserved {
		if err := d.idx.makeRoom(ctx, k, size-reserved); err != nil {
			return fmt.Errorf("caching %s (%d bytes): %w", k, size, err)
		}
	}
	if err := d.idx.acquireWrite(ctx, k); err != nil {
		return err
	}
	defer d.idx.releaseWrite(ctx, k)
	f, err := os.OpenFile(file, os.O_RDWR, 0) //nolint:gosec // the caller's own spool file
	if err != nil {
		return err
	}
	err = errors.Join(f.Chmod(0o644), f.Sync(), f.Close())
	if err != nil {
		return fmt.Errorf("%s: sync %s: %w", DriverName, file, err)
	}
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil { //nolint:gosec // distribution's layout, readable as the filesystem driver leaves it
		return err
	}
	if err := os.Rename(file, data); err != nil {
		return err
	}
	d.idx.insertFor(ctx, k, size, file)
	return nil
}

// RemoveUploads deletes what distribution's uploads left in the
// repositories' _uploads directories: an upload that failed after its
// writer committed (distribution's Cancel then returns early), or that a
// crash or a kill cut short. Only the serve command calls it, at start,
// before it takes requests (garbage-collect may run beside a serving
// proxy). It returns how many uploads it removed.
func (d *Driver) RemoveUploads(ctx context.Context) (int, error) {
	removed := 0
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			switch {
			case e.Name() == "_uploads":
				ups, err := os.ReadDir(p)
				if err != nil {
					return err
				}
				for _, u := range ups {
					if err := os.RemoveAll(filepath.Join(p, u.Name())); err != nil {
						return err
					}
					removed++
				}
			case strings.HasPrefix(e.Name(), "_"):
				// _layers, _manifests: links, never uploads.
			default:
				if err := walk(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk(d.idx.fullPath(repositoriesRoot))
	return removed, err
}
