package pullthrough

import (
	"context"
	"errors"
	"syscall"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/redact"
)

// noSpace reports whether err is a write refused for lack of disk space
// (ENOSPC, EDQUOT, EFBIG), also inside storage driver errors, which do
// not unwrap.
func noSpace(err error) bool {
	for err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG) {
			return true
		}
		var se storagedriver.Error
		if !errors.As(err, &se) {
			return false
		}
		err = se.Detail
	}
	return false
}

// ServeWhenFull wraps ns, the local namespace distribution's proxy keeps
// its copies in, so that a manifest that cannot be stored there for lack
// of disk space is still served: distribution's proxy fails the client's
// GET when its copy of a manifest fetched from ECR cannot be put into the
// cache. Such a Put succeeds without storing anything, logs a warning and
// counts an uncached ReasonDiskFull; any other failure stays a failure.
func (p *Puller) ServeWhenFull(ns distribution.Namespace) distribution.Namespace {
	return &fullDiskNamespace{Namespace: ns, p: p}
}

type fullDiskNamespace struct {
	distribution.Namespace
	p *Puller
}

func (n *fullDiskNamespace) Repository(ctx context.Context, name reference.Named) (distribution.Repository, error) {
	repo, err := n.Namespace.Repository(ctx, name)
	if err != nil {
		return nil, err
	}
	return &fullDiskRepository{Repository: repo, p: n.p}, nil
}

type fullDiskRepository struct {
	distribution.Repository
	p *Puller
}

func (r *fullDiskRepository) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	ms, err := r.Repository.Manifests(ctx, options...)
	if err != nil {
		return nil, err
	}
	return &fullDiskManifests{ManifestService: ms, p: r.p, name: r.Named()}, nil
}

type fullDiskManifests struct {
	distribution.ManifestService
	p    *Puller
	name reference.Named
}

// Put stores the manifest, or says why it could not for lack of space.
func (m *fullDiskManifests) Put(ctx context.Context, manifest distribution.Manifest, options ...distribution.ManifestServiceOption) (digest.Digest, error) {
	d, err := m.ManifestService.Put(ctx, manifest, options...)
	if err == nil || !noSpace(err) {
		return d, err
	}
	_, payload, perr := manifest.Payload()
	if perr != nil {
		return d, err
	}
	d = digest.FromBytes(payload)
	m.p.notCached(m.name, "manifest", d.String(), err)
	return d, nil
}

// notCached says that what (a manifest, a tag) of name, fetched from ECR,
// is served without being stored for lack of disk space.
func (p *Puller) notCached(name reference.Named, what, ref string, err error) {
	p.log.WithField("repository", name.Name()).WithField(what, ref).WithField("reason", ReasonDiskFull).
		WithError(redact.Error(err)).Warn("cannot cache " + what + "; serving it without caching it")
	p.observer.Uncached(ReasonDiskFull)
}
