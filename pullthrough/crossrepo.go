package pullthrough

import (
	"context"
	"errors"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// linkCached makes a blob the cache already holds for another repository
// (of another registry prefix, or of the same registry) this
// repository's too, without downloading it again: blobs are stored once
// by digest, each repository links to them. ECR is asked first with a
// HEAD for this repository, which it answers 404 when the repository
// lacks the blob, so that no repository is served content its registry
// does not give it; the size must agree. It reports whether the blob is
// linked now, and its descriptor.
func (b *blobStore) linkCached(ctx context.Context, local distribution.BlobStore, dgst digest.Digest) (v1.Descriptor, bool) {
	cached, err := b.local.BlobStatter().Stat(ctx, dgst)
	if err != nil {
		return v1.Descriptor{}, false
	}
	up, err := b.p.stat(ctx, b.name, dgst)
	if err != nil || (up.Size >= 0 && up.Size != cached.Size) {
		return v1.Descriptor{}, false
	}
	canonical, err := reference.WithDigest(b.name, dgst)
	if err != nil {
		return v1.Descriptor{}, false
	}
	w, err := local.Create(ctx, linkExisting{from: canonical, desc: cached})
	if w != nil {
		_ = w.Cancel(ctx) // the store did not honour the mount
	}
	var mounted distribution.ErrBlobMounted
	if !errors.As(err, &mounted) {
		return v1.Descriptor{}, false
	}
	b.p.log.WithField("digest", dgst).WithField("repository", b.name.Name()).
		Info("blob already cached for another repository: linked after ECR confirmed it, not downloaded again")
	desc := mounted.Descriptor
	desc.Digest = dgst
	return desc, true
}

// linkExisting is a blob create option that links a blob the store
// holds into the repository: distribution's cross-repository mount with
// the descriptor given, which links without looking at the source.
type linkExisting struct {
	from reference.Canonical
	desc v1.Descriptor
}

// Apply implements distribution.BlobCreateOption.
func (o linkExisting) Apply(v any) error {
	opts, ok := v.(*distribution.CreateOptions)
	if !ok {
		return errors.New("link existing blob: not a blob store's create options")
	}
	desc := o.desc
	opts.Mount.ShouldMount, opts.Mount.From, opts.Mount.Stat = true, o.from, &desc
	return nil
}

// joinOtherDownload joins a download of dgst that is running for another
// repository (another registry prefix, or another repository of the same
// registry), once ECR confirmed with a HEAD that this repository has the
// blob, with the same size: two repositories pulling one layer cold at
// the same moment fetch it once. The download commits the blob for the
// repository that started it; this one links it at its next request
// (linkCached). ok is false when there is no such download, ECR does not
// confirm it, or the request has no id to park its place under: the
// caller then downloads for itself, as before.
func (b *blobStore) joinOtherDownload(ctx context.Context, dgst digest.Digest) (v1.Descriptor, bool) {
	other := b.p.otherFlight(b.name, dgst)
	if other == nil || requestID(ctx) == "" {
		return v1.Descriptor{}, false
	}
	up, err := b.p.stat(ctx, b.name, dgst)
	if err != nil {
		return v1.Descriptor{}, false
	}
	rd, ok := b.p.joinExisting(other)
	if !ok {
		return v1.Descriptor{}, false
	}
	other.noteJoined(requestID(ctx))
	desc, err := b.waitStarted(ctx, other, dgst)
	if err != nil || (up.Size >= 0 && desc.Size >= 0 && up.Size != desc.Size) || !b.p.park(ctx, other, rd) {
		b.p.leave(other, rd)
		return v1.Descriptor{}, false
	}
	b.p.log.WithField("digest", dgst).WithField("repository", b.name.Name()).WithField("from", other.name.Name()).
		Info("blob downloading for another repository: joined after ECR confirmed it, not downloaded twice")
	return desc, true
}

// otherFlight returns a download of dgst in flight for a repository other
// than name, or nil.
func (p *Puller) otherFlight(name reference.Named, dgst digest.Digest) *flight {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.flights {
		if f.dgst == dgst && f.name.Name() != name.Name() {
			return f
		}
	}
	return nil
}

// joinExisting adds a client to f if f is still the download in flight
// for its key and can serve a new client from the start. Every
// successful join must be followed by a leave.
func (p *Puller) joinExisting(f *flight) (*reader, bool) {
	rd := &reader{}
	p.mu.Lock()
	if p.flights[f.key] != f {
		p.mu.Unlock()
		return nil, false
	}
	f.mu.Lock()
	ok := f.servableLocked()
	if ok {
		f.readers[rd] = struct{}{}
	}
	f.mu.Unlock()
	if ok {
		f.waiters++
	}
	p.mu.Unlock()
	if !ok {
		return nil, false
	}
	p.observer.WaitersChanged(1)
	return rd, true
}
