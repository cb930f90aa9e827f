package lrufs

import (
	"context"
	"errors"
	"fmt"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// uploadWriter is the FileWriter of an upload (repositories/<name>/_uploads/
// <uuid>/data). distribution's proxy writes a blob being pulled through to the
// client and to the upload with io.MultiWriter, which stops at the first write
// error: a full disk would cut the client off. So uploadWriter remembers the
// first write error (ENOSPC, EDQUOT, EIO...), drops that and later data while
// reporting it as written, and fails Commit (and Close) with the error. The
// client gets its bytes; the blob is simply not cached (the proxy cancels the
// upload when Commit fails).
type uploadWriter struct {
	storagedriver.FileWriter
	size int64 // bytes accepted, including dropped ones
	err  error // first write error
}

func (w *uploadWriter) Write(p []byte) (int, error) {
	if w.err == nil {
		n, err := w.FileWriter.Write(p)
		if err != nil {
			w.err = err
		} else if n < len(p) {
			w.err = fmt.Errorf("short write: %d of %d bytes", n, len(p))
		}
	}
	w.size += int64(len(p))
	return len(p), nil
}

// Size returns the bytes accepted by Write, written or not.
func (w *uploadWriter) Size() int64 {
	return w.size
}

// Commit fails with the first write error, if any, leaving the upload to be
// cancelled; otherwise it commits.
func (w *uploadWriter) Commit(ctx context.Context) error {
	if w.err != nil {
		return fmt.Errorf("writing upload: %w", w.err)
	}
	return w.FileWriter.Commit(ctx)
}

// Close closes the file and reports the first write error, if any.
func (w *uploadWriter) Close() error {
	err := w.FileWriter.Close()
	if w.err != nil {
		return errors.Join(fmt.Errorf("writing upload: %w", w.err), err)
	}
	return err
}

// blobWriter is the FileWriter of blob data written in place (distribution
// itself moves uploads into place instead). It holds a reference on the blob
// until Commit, Cancel or Close, and indexes the blob at Commit.
type blobWriter struct {
	storagedriver.FileWriter
	d         *driver
	key       blobKey
	once      sync.Once
	committed bool
}

func (w *blobWriter) done(ctx context.Context) {
	w.once.Do(func() { w.d.idx.releaseWrite(ctx, w.key) })
}

// Commit commits the data and indexes the blob, evicting others if the
// bound is crossed.
func (w *blobWriter) Commit(ctx context.Context) error {
	defer w.done(ctx)
	if err := w.FileWriter.Commit(ctx); err != nil {
		return err
	}
	w.committed = true
	w.d.idx.insert(ctx, w.key, w.Size())
	return nil
}

// Cancel removes the data and drops the blob from the index.
func (w *blobWriter) Cancel(ctx context.Context) error {
	defer w.done(ctx)
	err := w.FileWriter.Cancel(ctx)
	w.d.idx.forget(w.key.dataPath())
	return err
}

// Close closes the file; an uncommitted write is indexed with what was
// written, like the filesystem driver leaves it.
func (w *blobWriter) Close() error {
	ctx := context.Background()
	defer w.done(ctx)
	err := w.FileWriter.Close()
	if err == nil && !w.committed {
		w.d.idx.indexExisting(ctx, w.key)
	}
	return err
}
