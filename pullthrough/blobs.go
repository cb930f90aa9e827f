package pullthrough

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobStore wraps a proxied repository's blob store; what it does not
// override (Get, Open, writes) goes to distribution's proxy as before.
type blobStore struct {
	distribution.BlobStore
	p     *Puller
	local distribution.Namespace
	name  reference.Named
}

var _ distribution.BlobStore = (*blobStore)(nil)

// localBlobs is the repository's blob store in the local namespace.
func (b *blobStore) localBlobs(ctx context.Context) (distribution.BlobStore, error) {
	repo, err := localRepo(ctx, b.local, b.name)
	if err != nil {
		return nil, err
	}
	return repo.Blobs(ctx), nil
}

// Stat answers from the local store, else from ECR's HEAD (no download).
func (b *blobStore) Stat(ctx context.Context, dgst digest.Digest) (v1.Descriptor, error) {
	local, err := b.localBlobs(ctx)
	if err != nil {
		return v1.Descriptor{}, err
	}
	desc, err := local.Stat(ctx, dgst)
	if err == nil {
		return desc, nil
	}
	if !errors.Is(err, distribution.ErrBlobUnknown) {
		return v1.Descriptor{}, err
	}
	if desc, ok := b.p.inFlight(b.name, dgst); ok {
		return desc, nil
	}
	desc, err = b.p.stat(ctx, b.name, dgst)
	if err != nil {
		b.p.log.WithError(err).WithField("digest", dgst).Warn("upstream blob HEAD failed")
		return v1.Descriptor{}, clientError(err, dgst)
	}
	return desc, nil
}

// ServeBlob serves a cached blob from disk; a missing one is answered from
// ECR, HEAD without download and GET through the shared download.
func (b *blobStore) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, dgst digest.Digest) error {
	local, err := b.localBlobs(ctx)
	if err != nil {
		return err
	}
	// The local store stats before writing anything: on ErrBlobUnknown
	// nothing was written and the miss path takes over.
	err = local.ServeBlob(ctx, w, r, dgst)
	if err == nil || !errors.Is(err, distribution.ErrBlobUnknown) {
		return err
	}
	desc, ok := b.p.inFlight(b.name, dgst)
	if !ok {
		if desc, err = b.p.stat(ctx, b.name, dgst); err != nil {
			b.p.log.WithError(err).WithField("digest", dgst).Warn("upstream blob HEAD failed")
			return clientError(err, dgst)
		}
	}
	if r.Method == http.MethodHead {
		h := w.Header()
		h.Set("Content-Type", octetStream)
		h.Set("Docker-Content-Digest", dgst.String())
		h.Set("Accept-Ranges", "bytes")
		h.Set("ETag", `"`+dgst.String()+`"`)
		h.Set(cacheStatusHeader, "MISS")
		if desc.Size >= 0 {
			h.Set("Content-Length", strconv.FormatInt(desc.Size, 10))
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	f, finished := b.p.join(ctx, b.name, dgst, desc.Size, local)
	defer b.p.leave(f)
	return f.serve(ctx, w, r, b.p, finished)
}
