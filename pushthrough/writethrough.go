package pushthrough

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/logx"
)

// Defaults of a WriteThrough.
const (
	// DefaultMaxUploads bounds the upload sessions copied at once; more
	// concurrent uploads still reach ECR, uncopied.
	DefaultMaxUploads = 256
	// DefaultUploadIdleTimeout is how long an upload session may stay
	// without a request before its local copy is dropped.
	DefaultUploadIdleTimeout = time.Hour
	// localWriteTimeout bounds one local commit or manifest write, as
	// distribution's proxy bounds its cache writes.
	localWriteTimeout = 5 * time.Minute
)

// WriteThrough copies what clients push through the [Passthrough] into
// the local cache, so that the first pull after a push is served locally.
// It is best effort: any local failure (disk full, a digest mismatch, a
// session it did not see start) only drops the copy, never the push.
//
// It gets distribution's local namespace, the storage the pull-through
// cache reads first, through [WriteThrough.Init], a registry middleware
// InitFunc the command installs. distribution applies registry middleware
// to the local namespace before wrapping it in its proxy, so Init sees the
// plain local store, which accepts writes.
//
// Blobs: each upload session ECR opens (POST answered 202) is tracked by
// its ECR upload ID; the bytes of its PATCH and PUT bodies are teed, as
// they stream to ECR, into a local BlobWriter. After each chunk the size
// ECR reports (Range) must match what was copied; when ECR answers the
// final PUT with 201, the local blob is committed under the digest the
// client gave, which distribution verifies against the copied bytes.
// Sessions are bounded in number and dropped after an idle timeout.
//
// Manifests: after ECR answers a manifest PUT with 201, the same bytes
// are put into the local manifest store (without checking that the
// blobs are local, as distribution's proxy does) and tagged.
//
// Locking: the table of sessions has its own lock, a leaf: nothing else
// is locked while it is held. A session's lock is held across local
// writes and may take nothing but the table's lock after it.
type WriteThrough struct {
	log         logrus.FieldLogger
	now         func() time.Time
	maxSessions int
	idleTimeout time.Duration

	spoolDir string // where pushed blobs are copied before the cache adopts them

	local atomic.Pointer[localStore]

	// mu guards sessions. It is a channel, so that the readiness check
	// can try it with a deadline: a wedged table shows on /readyz.
	mu       chan struct{}
	sessions map[string]*upload
}

// WriteThroughOption configures a WriteThrough.
type WriteThroughOption func(*WriteThrough)

// WithWriteThroughLogger sets the logger (default: discard).
func WithWriteThroughLogger(l logrus.FieldLogger) WriteThroughOption {
	return func(wt *WriteThrough) {
		if l != nil {
			wt.log = l
		}
	}
}

// WithMaxUploads sets how many upload sessions are copied at once
// (DefaultMaxUploads when not positive).
func WithMaxUploads(n int) WriteThroughOption {
	return func(wt *WriteThrough) {
		if n > 0 {
			wt.maxSessions = n
		}
	}
}

// WithUploadIdleTimeout sets how long a session may be idle before its
// copy is dropped (DefaultUploadIdleTimeout when not positive).
func WithUploadIdleTimeout(d time.Duration) WriteThroughOption {
	return func(wt *WriteThrough) {
		if d > 0 {
			wt.idleTimeout = d
		}
	}
}

// WithWriteThroughSpoolDir sets the directory of the local copies of
// uploads in flight, on the cache's filesystem: with a cache driver that
// adopts files (lrufilesystem), a pushed blob is then written once and
// not hashed again. Without it, copies go through distribution's blob
// writer.
func WithWriteThroughSpoolDir(dir string) WriteThroughOption {
	return func(wt *WriteThrough) { wt.spoolDir = dir }
}

// withWriteThroughClock sets the clock, for tests.
func withWriteThroughClock(now func() time.Time) WriteThroughOption {
	return func(wt *WriteThrough) { wt.now = now }
}

// NewWriteThrough returns a WriteThrough with no namespace yet; it copies
// nothing until Init has run.
func NewWriteThrough(opts ...WriteThroughOption) *WriteThrough {
	wt := &WriteThrough{
		log:         logx.Discard(),
		now:         time.Now,
		maxSessions: DefaultMaxUploads,
		idleTimeout: DefaultUploadIdleTimeout,
		mu:          make(chan struct{}, 1),
		sessions:    make(map[string]*upload),
	}
	for _, o := range opts {
		o(wt)
	}
	return wt
}

// Init is a registry middleware InitFunc
// (registry/middleware/registry.InitFunc): it records ns, distribution's
// local namespace, and returns it unchanged.
func (wt *WriteThrough) Init(_ context.Context, ns distribution.Namespace, d storagedriver.StorageDriver, _ map[string]any) (distribution.Namespace, error) {
	files, _ := d.(BlobAdopter)
	wt.local.Store(&localStore{ns: ns, files: files})
	return ns, nil
}

// localStore is distribution's local namespace and the cache's driver,
// when it can adopt files.
type localStore struct {
	ns    distribution.Namespace
	files BlobAdopter
}

func (wt *WriteThrough) namespace() distribution.Namespace {
	if l := wt.local.Load(); l != nil {
		return l.ns
	}
	return nil
}

// lock takes the sessions lock; unlock releases it.
func (wt *WriteThrough) lock()   { wt.mu <- struct{}{} }
func (wt *WriteThrough) unlock() { <-wt.mu }

// Ready reports whether the table of upload sessions can be locked before
// ctx ends: an error means the upload path is wedged.
func (wt *WriteThrough) Ready(ctx context.Context) error {
	select {
	case wt.mu <- struct{}{}:
		wt.unlock()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("write-through: upload sessions locked: %w", ctx.Err())
	}
}

func (wt *WriteThrough) repository(ctx context.Context, repo string) (distribution.Repository, error) {
	ns := wt.namespace()
	if ns == nil {
		return nil, errNoNamespace
	}
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, fmt.Errorf("repository name %q: %w", repo, err)
	}
	r, err := ns.Repository(ctx, named)
	if err != nil {
		return nil, fmt.Errorf("open local repository %s: %w", repo, err)
	}
	return r, nil
}

// upload is the local copy of one ECR upload session.
type upload struct {
	repo string
	id   string

	touched atomic.Int64 // UnixNano of the last request; read without mu

	mu      sync.Mutex
	copy    localCopy // nil until the first byte
	written int64
	dead    bool
}

func sessionKey(repo, id string) string { return repo + "@" + id }

// begin starts tracking the ECR upload session id of repo.
func (wt *WriteThrough) begin(repo, id string) {
	if wt.namespace() == nil || id == "" {
		return
	}
	now := wt.now()
	var idle []*upload
	wt.lock()
	for k, u := range wt.sessions {
		if now.Sub(time.Unix(0, u.touched.Load())) > wt.idleTimeout {
			idle = append(idle, u)
			delete(wt.sessions, k)
		}
	}
	full := len(wt.sessions) >= wt.maxSessions
	if !full {
		u := &upload{repo: repo, id: id}
		u.touched.Store(now.UnixNano())
		wt.sessions[sessionKey(repo, id)] = u
	}
	wt.unlock()
	for _, u := range idle {
		wt.kill(u, "idle for longer than "+wt.idleTimeout.String())
	}
	if full {
		wt.log.WithFields(logrus.Fields{"repository": repo, "upload": id}).Info("write-through: too many uploads in flight; this one is not copied into the cache")
	}
}

func (wt *WriteThrough) session(repo, id string) *upload {
	wt.lock()
	defer wt.unlock()
	return wt.sessions[sessionKey(repo, id)]
}

func (wt *WriteThrough) take(repo, id string) *upload {
	wt.lock()
	defer wt.unlock()
	k := sessionKey(repo, id)
	u := wt.sessions[k]
	delete(wt.sessions, k)
	return u
}

// tee returns body, copying what is read from it into the session's
// local blob when the session is tracked and the chunk starts where the
// copy ends (contentRange is the request's Content-Range, "start-end").
func (wt *WriteThrough) tee(ctx context.Context, repo, id string, body io.ReadCloser, contentRange string) io.ReadCloser {
	u := wt.session(repo, id)
	if u == nil {
		return body
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.dead {
		return body
	}
	u.touched.Store(wt.now().UnixNano())
	if start, _, ok := parseRange(contentRange); ok && start != u.written {
		wt.killLocked(u, fmt.Sprintf("chunk starts at %d, the copy has %d bytes", start, u.written))
		return body
	}
	if u.copy == nil {
		// The copy outlives this request: it keeps the context.
		c, err := wt.newCopy(context.WithoutCancel(ctx), repo)
		if err != nil {
			wt.killLocked(u, "create local upload: "+err.Error())
			return body
		}
		u.copy = c
	}
	return &teeBody{ReadCloser: body, wt: wt, u: u}
}

// teeBody copies what is read into an upload; a local write error stops
// the copy, never the read.
type teeBody struct {
	io.ReadCloser
	wt *WriteThrough
	u  *upload
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.u.mu.Lock()
		if !b.u.dead && b.u.copy != nil {
			if _, werr := b.u.copy.Write(p[:n]); werr != nil {
				b.wt.killLocked(b.u, "local write: "+werr.Error())
			} else {
				b.u.written += int64(n)
			}
		}
		b.u.mu.Unlock()
	}
	return n, err
}

// chunkDone checks the copy against the Range ECR answered a PATCH with.
func (wt *WriteThrough) chunkDone(repo, id, rangeHeader string) {
	u := wt.session(repo, id)
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.dead {
		return
	}
	if _, end, ok := parseRange(rangeHeader); ok && end+1 != u.written {
		wt.killLocked(u, fmt.Sprintf("ECR holds %d bytes, the copy %d", end+1, u.written))
	}
}

// drop forgets a session and discards its copy (a failed or cancelled
// request).
func (wt *WriteThrough) drop(repo, id, why string) {
	if u := wt.take(repo, id); u != nil {
		wt.kill(u, why)
	}
}

// commit stores the session's copy as blob dgst, after ECR accepted it.
func (wt *WriteThrough) commit(ctx context.Context, repo, id, dgst string) {
	u := wt.take(repo, id)
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	log := wt.log.WithFields(logrus.Fields{"repository": repo, "digest": dgst})
	if u.dead || u.copy == nil {
		if !u.dead {
			log.Debug("write-through: empty upload, nothing to cache")
		}
		return
	}
	d, err := digest.Parse(dgst)
	if err != nil {
		wt.killLocked(u, "digest: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(ctx, localWriteTimeout)
	defer cancel()
	if err := u.copy.Commit(ctx, d, u.written); err != nil {
		wt.killLocked(u, "commit: "+err.Error())
		return
	}
	u.dead = true // committed: nothing left to cancel
	log.WithField("size", u.written).Debug("write-through: blob cached")
}

// kill discards a session's copy.
func (wt *WriteThrough) kill(u *upload, why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	wt.killLocked(u, why)
}

// killLocked discards a session's copy and logs why (nothing when why is
// empty: the client cancelled).
func (wt *WriteThrough) killLocked(u *upload, why string) {
	if u.dead {
		return
	}
	u.dead = true
	if why != "" {
		wt.log.WithFields(logrus.Fields{"repository": u.repo, "upload": u.id}).Warnf("write-through: not caching this upload: %s", why)
	}
	if u.copy != nil {
		// The copy keeps the context it was created with.
		if err := u.copy.Cancel(context.Background()); err != nil {
			wt.log.WithError(err).Debug("write-through: cancel local upload")
		}
	}
}

// putManifest stores a manifest ECR accepted (201) under its digest and,
// for a tag reference, the tag.
func (wt *WriteThrough) putManifest(ctx context.Context, repo, ref, contentType string, payload []byte, ecrDigest string) {
	if wt.namespace() == nil {
		return
	}
	log := wt.log.WithFields(logrus.Fields{"repository": repo, "reference": ref})
	// d names the manifest in the local store (sha256); named is the
	// digest the client and ECR name it by, the reference's algorithm
	// when it is a digest (sha512 too).
	d := digest.FromBytes(payload)
	named := d
	if want, err := digest.Parse(ref); err == nil {
		if !want.Algorithm().Available() || want.Algorithm().FromBytes(payload) != want {
			log.Warnf("write-through: manifest digest %s does not match the reference; not cached", d)
			return
		}
		named = want
	}
	if ecrDigest != "" && ecrDigest != named.String() {
		log.Warnf("write-through: ECR reports digest %s for manifest %s; not cached", ecrDigest, named)
		return
	}
	m, desc, err := distribution.UnmarshalManifest(contentType, payload)
	if err != nil {
		log.WithError(err).Warn("write-through: manifest not cached")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, localWriteTimeout)
	defer cancel()
	r, err := wt.repository(ctx, repo)
	if err != nil {
		log.WithError(err).Warn("write-through: manifest not cached")
		return
	}
	ms, err := r.Manifests(ctx, storage.SkipLayerVerification())
	if err == nil {
		var got digest.Digest
		got, err = ms.Put(ctx, m)
		if err == nil && got != d {
			err = fmt.Errorf("stored as %s, want %s", got, d)
		}
	}
	if err != nil {
		log.WithError(err).Warn("write-through: manifest not cached")
		return
	}
	if _, err := digest.Parse(ref); err != nil {
		tagDesc := v1.Descriptor{MediaType: desc.MediaType, Digest: d, Size: int64(len(payload))}
		if err := r.Tags(ctx).Tag(ctx, ref, tagDesc); err != nil {
			log.WithError(err).Warn("write-through: tag not cached")
			return
		}
	}
	log.WithField("digest", d.String()).Debug("write-through: manifest cached")
}

// deleteManifest mirrors a DELETE ECR accepted: a digest reference drops
// the local manifest (when distribution's storage.delete is enabled), a
// tag the local tag.
func (wt *WriteThrough) deleteManifest(ctx context.Context, repo, ref string) {
	if wt.namespace() == nil {
		return
	}
	r, err := wt.repository(ctx, repo)
	if err == nil {
		if d, perr := digest.Parse(ref); perr == nil {
			var ms distribution.ManifestService
			if ms, err = r.Manifests(ctx); err == nil {
				err = ms.Delete(ctx, d)
			}
		} else {
			err = r.Tags(ctx).Untag(ctx, ref)
		}
	}
	if err != nil {
		wt.log.WithError(err).WithFields(logrus.Fields{"repository": repo, "reference": ref}).
			Info("write-through: deleted in ECR but not in the cache")
	}
}

// parseRange parses "start-end" (Content-Range of a chunk, Range of
// ECR's answer), allowing a "bytes=" or "bytes " prefix.
func parseRange(v string) (start, end int64, ok bool) {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(strings.TrimPrefix(v, "bytes="), "bytes ")
	a, b, found := strings.Cut(v, "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseInt(a, 10, 64)
	e, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || s < 0 || e < s {
		return 0, 0, false
	}
	return s, e, true
}
