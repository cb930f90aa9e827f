package lrufs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

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
	d.idx.acquire(k)
	f, err = os.Open(d.idx.fullPath(k.dataPath()))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			d.idx.forget(k.dataPath())
		}
		d.idx.release(ctx, k)
		return nil, nil, fmt.Errorf("%w: %w", ErrNotLinked, err)
	}
	metricBlobReads.Inc()
	if !d.idx.use(k) {
		d.idx.indexExisting(ctx, k)
	}
	return f, func() { d.idx.release(ctx, k) }, nil
}
