package pullthrough

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"
)

// ForwardedHeader marks a blob request one replica forwarded to the
// replica that owns its download: that one serves it itself, never
// forwarding it again. Its value is the cluster's secret
// (Coordinator.Forwarded): a client's request that carries it with any
// other value is handled as any client's.
const ForwardedHeader = "X-Ecr-Proxy-Forwarded"

// ErrOwnerGone is returned by Coordinator.Forward, having written
// nothing, when the owner did not answer: its claim was dropped, and the
// caller claims the download again.
var ErrOwnerGone = errors.New("the replica that owns the download does not answer")

// Coordinator shares the downloads of cold blobs between the replicas of
// a cluster that share one cache (package cluster): one replica owns each
// download, and the others forward their clients' requests to it.
type Coordinator interface {
	// Claim claims the download of key (repository@digest) for this
	// replica: mine is true when this replica owns it, now or already,
	// or when there is no one to ask (each replica then downloads for
	// itself); otherwise owner is the address of the replica that does.
	Claim(ctx context.Context, key string) (owner string, mine bool)
	// Forward answers r (a GET of the blob) from the replica at owner.
	// It returns ErrOwnerGone, having written nothing, when owner does
	// not answer; an error after the response began means it was cut.
	Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, key, owner string) error
	// Renew keeps this replica's claim on key alive while bytes arrive;
	// Release gives it up once the download has ended. Neither blocks.
	Renew(key string)
	Release(key string)
	// Forwarded reports whether r was forwarded by another replica
	// (its ForwardedHeader holds the cluster's secret); a client's mark
	// is not trusted.
	Forwarded(r *http.Request) bool
}

// WithCoordinator makes the Puller share downloads with the other
// replicas of a cluster through c.
func WithCoordinator(c Coordinator) Option { return func(p *Puller) { p.coord = c } }

// owner returns the replica that owns the download of dgst when it is
// another one and this request may go to it: no download of it runs
// here, and the request was not forwarded already.
func (b *blobStore) owner(ctx context.Context, dgst digest.Digest) (string, bool) {
	if b.p.coord == nil {
		return "", false
	}
	// distribution's request context holds the request ("http.request").
	if r, ok := ctx.Value("http.request").(*http.Request); ok && b.p.coord.Forwarded(r) {
		return "", false
	}
	key := b.name.Name() + "@" + dgst.String()
	b.p.mu.Lock()
	_, running := b.p.flights[key]
	b.p.mu.Unlock()
	if running {
		return "", false
	}
	owner, mine := b.p.coord.Claim(ctx, key)
	return owner, !mine
}

// ownedElsewhere reports whether another replica owns the download of
// dgst (see owner).
func (b *blobStore) ownedElsewhere(ctx context.Context, dgst digest.Digest) bool {
	_, elsewhere := b.owner(ctx, dgst)
	return elsewhere
}

// forward serves a GET of dgst from the replica that owns its download,
// if another does; handled is false when this replica is to serve it
// (it owns the download, or took it over from an owner that is gone).
func (b *blobStore) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, dgst digest.Digest) (handled bool, err error) {
	if r.Method != http.MethodGet {
		return false, nil
	}
	for range 2 { // an owner gone is replaced once
		owner, elsewhere := b.owner(ctx, dgst)
		if !elsewhere {
			return false, nil
		}
		err := b.p.coord.Forward(ctx, w, r, b.name.Name()+"@"+dgst.String(), owner)
		if !errors.Is(err, ErrOwnerGone) {
			return true, err
		}
		b.p.log.WithField("owner", owner).WithField("digest", dgst).Warn("the replica downloading the blob does not answer; taking the download over")
	}
	return false, nil
}

// renew and release keep the cluster's claim on f's download.
func (p *Puller) renew(f *flight) {
	if p.coord != nil {
		p.coord.Renew(f.key)
	}
}

func (p *Puller) release(f *flight) {
	if p.coord != nil {
		p.coord.Release(f.key)
	}
}

// TagWindow is a Coordinator that also shares the tag revalidation
// window (tagttl) among the replicas: a tag one replica confirmed with
// ECR is served by all, from the shared store, until the window ends.
type TagWindow interface {
	// TagChecked reports whether some replica confirmed key
	// (repository:tag) with ECR less than the window ago.
	TagChecked(ctx context.Context, key string) bool
	// NoteTagChecked starts key's window, for ttl; ForgetTag ends it
	// (ECR no longer has the tag). Neither blocks for long.
	NoteTagChecked(ctx context.Context, key string, ttl time.Duration)
	ForgetTag(ctx context.Context, key string)
}

// tagWindow is the coordinator's shared tag window, if it has one and a
// window is configured.
func (p *Puller) tagWindow() TagWindow {
	if p.tagTTL <= 0 {
		return nil
	}
	w, _ := p.coord.(TagWindow)
	return w
}
