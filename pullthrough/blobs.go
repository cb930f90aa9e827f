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

	"github.com/ecr-proxy/ecr-proxy/internal/blobfile"
	"github.com/ecr-proxy/ecr-proxy/internal/wire"
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
		// distribution resolves the link to the digest the blob is
		// stored under (sha256); the client asked for dgst, which
		// distribution's handler passes on to ServeBlob.
		desc.Digest = dgst
		return desc, nil
	}
	if !errors.Is(err, distribution.ErrBlobUnknown) {
		return v1.Descriptor{}, b.p.storageError(err)
	}
	if desc, ok := b.p.inFlight(b.name, dgst); ok {
		return desc, nil
	}
	if desc, ok := b.linkCached(ctx, local, dgst); ok {
		return desc, nil
	}
	if requestMethod(ctx) == http.MethodGet && !b.ownedElsewhere(ctx, dgst) {
		// distribution stats before it serves: a GET's download starts
		// now and answers the Stat, instead of a HEAD to ECR first.
		// (One that another replica downloads is forwarded there.)
		if desc, ok := b.joinOtherDownload(ctx, dgst); ok {
			return desc, nil
		}
		return b.startDownload(ctx, local, dgst)
	}
	desc, err = b.p.stat(ctx, b.name, dgst)
	if err != nil {
		b.p.log.WithError(err).WithField("digest", dgst).Warn("upstream blob HEAD failed")
		return v1.Descriptor{}, clientError(err, dgst)
	}
	return desc, nil
}

// startDownload joins (or starts) the download of dgst and waits until
// it has begun, to describe the blob from ECR's answer.
func (b *blobStore) startDownload(ctx context.Context, local distribution.BlobStore, dgst digest.Digest) (v1.Descriptor, error) {
	f, rd, finished := b.p.join(ctx, b.name, dgst, -1, local)
	if f == nil { // cached meanwhile
		return local.Stat(ctx, dgst)
	}
	if !finished {
		f.noteJoined(requestID(ctx))
	}
	desc, err := b.waitStarted(ctx, f, dgst)
	if err != nil || !b.p.park(ctx, f, rd) {
		b.p.leave(f, rd)
	}
	return desc, err
}

// waitStarted waits until the download f has begun, and describes the
// blob from ECR's answer.
func (b *blobStore) waitStarted(ctx context.Context, f *flight, dgst digest.Digest) (v1.Descriptor, error) {
	for {
		st := f.state()
		if st.started {
			f.mu.Lock()
			size := f.size
			f.mu.Unlock()
			return v1.Descriptor{Digest: dgst, Size: size, MediaType: wire.OctetStream}, nil
		}
		if st.done {
			b.p.log.WithError(st.err).WithField("digest", dgst).Warn("upstream blob GET failed")
			return v1.Descriptor{}, clientError(st.err, dgst)
		}
		select {
		case <-st.changed:
		case <-ctx.Done():
			return v1.Descriptor{}, ctx.Err()
		}
	}
}

// requestID is distribution's id of the request that ctx belongs to
// ("http.request.id"), or "" outside a request.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value("http.request.id").(string)
	return id
}

// requestMethod is the method of the client's request that ctx belongs
// to, from distribution's request context ("http.request.method", a key
// its dcontext package documents), or "" outside a request.
func requestMethod(ctx context.Context) string {
	m, _ := ctx.Value("http.request.method").(string)
	return m
}

// serveLocal serves dgst from the local store: from its file when the
// driver can open it (no 4 MiB buffered reader per request, as
// distribution's has), else through distribution, which stats before
// writing anything: on ErrBlobUnknown nothing was written. The blob is
// named by the digest asked for, not the one it is stored under.
func (b *blobStore) serveLocal(ctx context.Context, w http.ResponseWriter, r *http.Request, local distribution.BlobStore, dgst digest.Digest) error {
	if o := b.p.fileOpener(); o != nil {
		if f, release, err := o.OpenLinked(ctx, b.name.Name(), dgst); err == nil {
			defer release()
			defer f.Close()
			blobfile.Serve(w, r, f, dgst)
			return nil
		}
	}
	w.Header().Set("Docker-Content-Digest", dgst.String())
	return local.ServeBlob(ctx, w, r, dgst)
}

// ServeBlob serves a cached blob from disk; a missing one is answered from
// ECR, HEAD without download and GET through the shared download.
func (b *blobStore) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, dgst digest.Digest) error {
	local, err := b.localBlobs(ctx)
	if err != nil {
		return err
	}
	// The place this request's Stat took in the download, if any: held
	// until now, so that the download's bytes wait for this request.
	pf, prd := b.p.unpark(requestID(ctx), dgst)
	if pf != nil {
		defer b.p.leave(pf, prd)
	}
	err = b.serveLocal(ctx, w, r, local, dgst)
	if err == nil || !errors.Is(err, distribution.ErrBlobUnknown) {
		return b.p.storageError(err)
	}
	if pf != nil && r.Method == http.MethodGet {
		if st := pf.state(); st.done && st.err != nil {
			// The download this request's Stat joined failed before
			// its answer began: an error status, not another download.
			return clientError(st.err, dgst)
		}
		return pf.serve(ctx, w, r, b.p, prd, false) // a miss: the Stat joined it
	}
	if handled, err := b.forward(ctx, w, r, dgst); handled {
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
		h.Set("Content-Type", wire.OctetStream)
		h.Set("Docker-Content-Digest", dgst.String())
		h.Set("Accept-Ranges", "bytes")
		h.Set("ETag", `"`+dgst.String()+`"`)
		h.Set(wire.CacheStatusHeader, wire.CacheMiss)
		if desc.Size >= 0 {
			h.Set("Content-Length", strconv.FormatInt(desc.Size, 10))
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	f, rd, finished := b.p.join(ctx, b.name, dgst, desc.Size, local)
	if f == nil { // cached meanwhile
		return b.serveLocal(ctx, w, r, local, dgst)
	}
	defer b.p.leave(f, rd)
	// A hit: the download had finished before this request came, not
	// while its Stat waited for it.
	return f.serve(ctx, w, r, b.p, rd, finished && !f.joinedEarlier(requestID(ctx)))
}
