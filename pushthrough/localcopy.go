package pushthrough

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/distribution/distribution/v3"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// SpoolPattern names the spool files of pushed blobs (os.CreateTemp's
// pattern), so that those a killed process left can be found and removed.
const SpoolPattern = "ecr-proxy-push-*"

// localCopy is the cache's copy of one upload, written as the bytes
// stream to ECR.
type localCopy interface {
	Write(p []byte) (int, error)
	// Commit stores the copy as blob dgst of size bytes, after ECR
	// accepted the upload under that digest.
	Commit(ctx context.Context, dgst digest.Digest, size int64) error
	// Cancel discards the copy.
	Cancel(ctx context.Context) error
}

// BlobAdopter is a cache storage driver that takes a complete blob file
// as a blob's data, by rename (lrufs.Driver.Adopt): it leaves the file
// where it was on error, and gone on success.
type BlobAdopter interface {
	Adopt(ctx context.Context, repo string, dgst digest.Digest, file string, size int64) error
}

// SpaceReserver is a cache storage driver that holds room under its
// bound for a spool file before it is written, evicting to make it
// (lrufs.Driver.Reserve); Reserve with a larger size grows it, Adopt of
// the file turns it into the blob's, Unreserve releases it. A driver that
// does not reserve still adopts.
type SpaceReserver interface {
	Reserve(ctx context.Context, file string, size int64) error
	Unreserve(file string)
}

// reserveStep is how far ahead of what a push has copied its room is
// reserved: the size of an upload is not known until it ends.
const reserveStep = 32 << 20

// newCopy starts the local copy of an upload to repo: a plain file that
// the cache adopts at the end when the driver can (one write and one
// SHA-256, without distribution's upload files, links and move), else
// distribution's blob writer. Either way the copy is checked against the
// digest before it enters the cache: ECR's 201 is not taken as proof.
func (wt *WriteThrough) newCopy(ctx context.Context, repo string) (localCopy, error) {
	local := wt.local.Load()
	if local == nil {
		return nil, errNoNamespace
	}
	if local.files != nil && wt.spoolDir != "" {
		f, err := os.CreateTemp(wt.spoolDir, SpoolPattern)
		if err != nil {
			return nil, fmt.Errorf("create push spool: %w", err)
		}
		room, _ := local.files.(SpaceReserver)
		return &fileCopy{ctx: ctx, f: f, repo: repo, files: local.files, room: room, sum: digest.Canonical.Digester()}, nil
	}
	r, err := wt.repository(ctx, repo)
	if err != nil {
		return nil, err
	}
	bw, err := r.Blobs(ctx).Create(ctx)
	if err != nil {
		return nil, err
	}
	return blobWriterCopy{bw}, nil
}

// fileCopy is a local copy in a spool file, hashed as it is written and
// adopted by the cache driver. Its room in the cache is reserved ahead of
// each write when the driver reserves: copied bytes count against the
// cache's bound before they reach the disk.
type fileCopy struct {
	ctx      context.Context // the copy's, for the evictions a reservation makes
	f        *os.File
	repo     string
	files    BlobAdopter
	room     SpaceReserver // nil: the driver does not reserve
	sum      digest.Digester
	written  int64
	reserved int64
}

func (c *fileCopy) Write(p []byte) (int, error) {
	if err := c.reserve(int64(len(p))); err != nil {
		return 0, err
	}
	n, err := c.f.Write(p)
	_, _ = c.sum.Hash().Write(p[:n])
	c.written += int64(n)
	return n, err
}

// reserve grows the copy's reservation to cover n more bytes: a step
// ahead, or exactly what is needed when the step does not fit.
func (c *fileCopy) reserve(n int64) error {
	need := c.written + n
	if c.room == nil || need <= c.reserved {
		return nil
	}
	if err := c.room.Reserve(c.ctx, c.f.Name(), need+reserveStep); err == nil {
		c.reserved = need + reserveStep
		return nil
	}
	if err := c.room.Reserve(c.ctx, c.f.Name(), need); err != nil {
		return fmt.Errorf("reserve room in the cache: %w", err)
	}
	c.reserved = need
	return nil
}

func (c *fileCopy) Commit(ctx context.Context, dgst digest.Digest, size int64) error {
	err := errors.Join(c.verify(dgst, size), c.f.Close())
	if err == nil {
		err = c.files.Adopt(ctx, c.repo, dgst, c.f.Name(), size) // fsyncs, renames
	}
	if err != nil {
		c.unreserve()
		return errors.Join(err, os.Remove(c.f.Name()))
	}
	return nil
}

// unreserve releases what is reserved for the copy (nothing is left
// after an adoption).
func (c *fileCopy) unreserve() {
	if c.room != nil {
		c.room.Unreserve(c.f.Name())
	}
}

// verify checks the copy against dgst and size: from the running sha256,
// or by reading the file again for another algorithm, as distribution's
// blob writer does.
func (c *fileCopy) verify(dgst digest.Digest, size int64) error {
	fi, err := c.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("copy holds %d bytes, the upload %d", fi.Size(), size)
	}
	got := c.sum.Digest()
	if dgst.Algorithm() != digest.Canonical {
		if !dgst.Algorithm().Available() {
			return fmt.Errorf("digest algorithm %s unavailable", dgst.Algorithm())
		}
		if got, err = dgst.Algorithm().FromReader(io.NewSectionReader(c.f, 0, size)); err != nil {
			return err
		}
	}
	if got != dgst {
		return fmt.Errorf("copy has digest %s, the upload %s", got, dgst)
	}
	return nil
}

func (c *fileCopy) Cancel(context.Context) error {
	c.unreserve()
	return errors.Join(c.f.Close(), os.Remove(c.f.Name()))
}

// blobWriterCopy is a local copy through distribution's blob writer,
// which verifies the digest again at Commit.
type blobWriterCopy struct{ bw distribution.BlobWriter }

func (c blobWriterCopy) Write(p []byte) (int, error) { return c.bw.Write(p) }

func (c blobWriterCopy) Commit(ctx context.Context, dgst digest.Digest, size int64) error {
	_, err := c.bw.Commit(ctx, v1.Descriptor{MediaType: wire.OctetStream, Digest: dgst, Size: size})
	return err
}

func (c blobWriterCopy) Cancel(ctx context.Context) error { return c.bw.Cancel(ctx) }
