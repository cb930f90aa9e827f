package lrufs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// DryRun reports corrupt blobs without removing them.
	DryRun bool
	// OnCorrupt, if set, is called for each corrupt blob as it is found
	// (and, without DryRun, after it was removed or failed to be).
	OnCorrupt func(CorruptBlob)
}

// CorruptBlob is a blob whose data file does not hold its content.
type CorruptBlob struct {
	// Digest is the blob's digest, from its path.
	Digest digest.Digest
	// Size is the size of its data file.
	Size int64
	// Problem says what is wrong: a different digest, or a read error.
	Problem string
	// Removed reports that its directory was deleted.
	Removed bool
	// Err is why it could not be removed, if it was not (nil with DryRun).
	Err error
}

// VerifyReport sums up a Verify run.
type VerifyReport struct {
	// Blobs is the number of blob data files hashed, and Bytes their size.
	Blobs int
	Bytes int64
	// Corrupt lists the blobs whose content does not match their digest.
	Corrupt []CorruptBlob
	// Skipped counts blobs of a digest algorithm this build cannot hash.
	Skipped int
	// Vanished counts blobs deleted or replaced during the run (evicted,
	// collected, or rewritten by a serving process): not judged.
	Vanished int
}

// Removed returns the number of corrupt blobs removed.
func (r VerifyReport) Removed() int {
	n := 0
	for _, c := range r.Corrupt {
		if c.Removed {
			n++
		}
	}
	return n
}

// Verify rehashes the data file of every blob stored under the root
// directory and, unless opts.DryRun, deletes the directory of each one
// whose content does not match its digest (or cannot be read), as eviction
// does, so that the proxy fetches it again on its next pull. It reads the
// files directly: verifying is not a use, and the recorded order of use is
// unchanged. It is safe beside a serving process on the same directory,
// which finds a removed blob missing at its next access. It returns an
// error only when it cannot go on (the scan fails, or ctx ends); corrupt
// blobs that could not be removed are in the report with their error.
func (d *Driver) Verify(ctx context.Context, opts VerifyOptions) (VerifyReport, error) {
	var blobs []storedBlob
	err := d.idx.scan(ctx, func(b storedBlob) error {
		blobs = append(blobs, b)
		return nil
	})
	var rep VerifyReport
	if err != nil {
		return rep, fmt.Errorf("%s: listing blobs under %s: %w", DriverName, d.idx.root, err)
	}
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("%s: verify: %w", DriverName, err)
		}
		d.verifyBlob(ctx, b.key, opts, &rep)
	}
	return rep, nil
}

// verifyBlob hashes one blob and records the outcome in rep, removing the
// blob if it is corrupt and opts allow.
func (d *Driver) verifyBlob(ctx context.Context, k blobKey, opts VerifyOptions, rep *VerifyReport) {
	alg, hex, _ := strings.Cut(string(k), "/")
	dgst := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if !dgst.Algorithm().Available() || dgst.Validate() != nil {
		rep.Skipped++
		return
	}
	full := d.idx.fullPath(k.dataPath())
	size, problem, err := hashFile(full, dgst)
	if errors.Is(err, fs.ErrNotExist) {
		rep.Vanished++
		return
	}
	rep.Blobs++
	rep.Bytes += size
	if problem == "" {
		return
	}
	c := CorruptBlob{Digest: dgst, Size: size, Problem: problem}
	if !opts.DryRun {
		if fi, err := os.Stat(full); err != nil || fi.Size() != size {
			// Replaced or deleted while it was hashed: not judged.
			rep.Blobs--
			rep.Bytes -= size
			rep.Vanished++
			return
		}
		c.Removed, c.Err = d.idx.dropCorrupt(ctx, k)
	}
	rep.Corrupt = append(rep.Corrupt, c)
	if opts.OnCorrupt != nil {
		opts.OnCorrupt(c)
	}
}

// hashFile hashes the file at full with dgst's algorithm. It returns the
// size read, and a problem when the content does not match dgst or cannot
// be read to the end; err is the error of opening the file (a missing file
// is not a problem, the caller skips it).
func hashFile(full string, dgst digest.Digest) (size int64, problem string, err error) {
	f, err := os.Open(full) //nolint:gosec // a blob data path under the driver's root
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, "", err
		}
		return 0, fmt.Sprintf("cannot open: %v", err), nil
	}
	defer f.Close() //nolint:errcheck // read only
	h := dgst.Algorithm().Hash()
	n, err := io.Copy(h, f)
	if err != nil {
		return n, fmt.Sprintf("read error after %d bytes: %v", n, err), nil
	}
	if got := digest.NewDigest(dgst.Algorithm(), h); got != dgst {
		return n, "content hashes to " + got.String(), nil
	}
	return n, "", nil
}
