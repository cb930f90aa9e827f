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
		return &fileCopy{f: f, repo: repo, files: local.files, sum: digest.Canonical.Digester()}, nil
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
// adopted by the cache driver.
type fileCopy struct {
	f     *os.File
	repo  string
	files BlobAdopter
	sum   digest.Digester // sha256, of what was written
}

func (c *fileCopy) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	_, _ = c.sum.Hash().Write(p[:n])
	return n, err
}

func (c *fileCopy) Commit(ctx context.Context, dgst digest.Digest, size int64) error {
	err := errors.Join(c.verify(dgst, size), c.f.Close())
	if err == nil {
		err = c.files.Adopt(ctx, c.repo, dgst, c.f.Name(), size) // fsyncs, renames
	}
	if err != nil {
		return errors.Join(err, os.Remove(c.f.Name()))
	}
	return nil
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
