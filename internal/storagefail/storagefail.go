// Package storagefail carries, in a request's context, that the cache's
// storage (a shared S3 bucket) failed while the request was served, so
// that the gateway answers an honest 503 naming the cache storage instead
// of distribution's 500 with the driver's error, addresses included.
// [Driver] marks it: a storage middleware wrapping the cache's driver.
package storagefail

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Flag records that a request met a storage failure.
type Flag struct{ set atomic.Bool }

type flagKey struct{}

// With returns ctx carrying a new, unset Flag.
func With(ctx context.Context) (context.Context, *Flag) {
	f := &Flag{}
	return context.WithValue(ctx, flagKey{}, f), f
}

// Mark sets the Flag ctx carries when err is a storage driver's failure
// (not a missing path, which is an answer).
func Mark(ctx context.Context, err error) {
	var se storagedriver.Error
	if !errors.As(err, &se) {
		return
	}
	if f, ok := ctx.Value(flagKey{}).(*Flag); ok && f != nil {
		f.set.Store(true)
	}
}

// Failed reports whether the storage failed for the request.
func (f *Flag) Failed() bool { return f != nil && f.set.Load() }

// Driver wraps a storage driver, marking the requests whose calls fail.
type Driver struct {
	storagedriver.StorageDriver
}

var _ storagedriver.StorageDriver = Driver{}

// GetContent marks a failure.
func (d Driver) GetContent(ctx context.Context, path string) ([]byte, error) {
	b, err := d.StorageDriver.GetContent(ctx, path)
	Mark(ctx, err)
	return b, err
}

// PutContent marks a failure.
func (d Driver) PutContent(ctx context.Context, path string, content []byte) error {
	err := d.StorageDriver.PutContent(ctx, path, content)
	Mark(ctx, err)
	return err
}

// Reader marks a failure.
func (d Driver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	r, err := d.StorageDriver.Reader(ctx, path, offset)
	Mark(ctx, err)
	return r, err
}

// Writer marks a failure.
func (d Driver) Writer(ctx context.Context, path string, appendMode bool) (storagedriver.FileWriter, error) {
	w, err := d.StorageDriver.Writer(ctx, path, appendMode)
	Mark(ctx, err)
	return w, err
}

// Stat marks a failure.
func (d Driver) Stat(ctx context.Context, path string) (storagedriver.FileInfo, error) {
	fi, err := d.StorageDriver.Stat(ctx, path)
	Mark(ctx, err)
	return fi, err
}

// List marks a failure.
func (d Driver) List(ctx context.Context, path string) ([]string, error) {
	l, err := d.StorageDriver.List(ctx, path)
	Mark(ctx, err)
	return l, err
}

// Move marks a failure.
func (d Driver) Move(ctx context.Context, src, dst string) error {
	err := d.StorageDriver.Move(ctx, src, dst)
	Mark(ctx, err)
	return err
}

// Delete marks a failure.
func (d Driver) Delete(ctx context.Context, path string) error {
	err := d.StorageDriver.Delete(ctx, path)
	Mark(ctx, err)
	return err
}

// RedirectURL marks a failure.
func (d Driver) RedirectURL(r *http.Request, path string) (string, error) {
	u, err := d.StorageDriver.RedirectURL(r, path)
	Mark(r.Context(), err)
	return u, err
}
