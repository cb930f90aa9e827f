package pullthrough

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	cutoff "github.com/ecr-proxy/ecr-proxy/internal/abort"
	"github.com/ecr-proxy/ecr-proxy/internal/redact"
	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// copyBuffer is the unit of spooling and of serving.
const copyBuffer = 256 << 10

// flight is one download of a blob from ECR, shared by every client that
// asks for it while it runs. Its bytes are spooled to a file that the
// clients read as it grows, through one descriptor the flight owns: the
// file stays readable after the cache adopts it (a rename) or evicts it,
// and is closed when the last client has left a finished flight. The
// room for the spool is reserved in the cache before it is written, when
// the cache driver reserves (SpaceReserver).
//
// A download whose room cannot be reserved, or whose spool cannot be
// written for lack of space, is uncached: it goes on, its clients read
// the bytes the spool holds and then the rest from a window in memory
// (see relay.go), and nothing is cached.
type flight struct {
	key  string
	name reference.Named
	dgst digest.Digest

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every change
	started bool          // the spool exists and size is final
	size    int64         // -1 when unknown
	spool   *os.File      // final once started
	adopted bool          // the spool file was moved into the cache
	written int64
	done    bool
	err     error
	waiters int
	readers map[*reader]struct{} // the clients joined, where they read
	room    SpaceReserver        // holds the spool's reservation; final once started

	uncached  bool   // streamed through memory past spooled; not cached
	replaced  bool   // a later download took its place in the table
	follows   bool   // it took the place of an uncached download (said once)
	spooled   int64  // bytes of the spool readable, once uncached
	relay     []byte // bytes [relayBase, written) of an uncached download
	relayBase int64
	// joined are the requests whose Stat joined the download before it
	// finished: they are misses, whenever they come to be served.
	joined map[string]bool
}

// noteJoined records that request id joined the download unfinished.
func (f *flight) noteJoined(id string) {
	if id == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.joined == nil {
		f.joined = map[string]bool{}
	}
	f.joined[id] = true
}

// joinedEarlier reports whether request id joined the download before it
// finished.
func (f *flight) joinedEarlier(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return id != "" && f.joined[id]
}

// update changes the flight under its lock and wakes its readers.
func (f *flight) update(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
	close(f.changed)
	f.changed = make(chan struct{})
}

// snapshot is the state of a flight at one moment.
type snapshot struct {
	started, done bool
	written       int64
	err           error
	changed       <-chan struct{} // closed at the next change
}

// state is a snapshot of the flight.
func (f *flight) state() snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return snapshot{f.started, f.done, f.written, f.err, f.changed}
}

// join returns the download of name@dgst in flight, starting it if there
// is none, the client's place in it, and whether it had already finished
// (checked, being committed): the request is then a cache hit. Every join
// must be followed by a leave. When no download is in flight but the
// blob is in the local store, it returns a nil flight: a download
// finished and was committed since the caller looked (it leaves the
// table only after its commit), and the caller serves the cached blob
// instead of fetching it again. An uncached download that has dropped
// bytes from memory cannot serve a new client: that client starts a
// download of its own.
func (p *Puller) join(ctx context.Context, name reference.Named, dgst digest.Digest, size int64, local distribution.BlobStore) (*flight, *reader, bool) {
	key := name.Name() + "@" + dgst.String()
	p.mu.Lock()
	_, ok := p.flights[key]
	p.mu.Unlock()
	if !ok {
		if _, err := local.Stat(ctx, dgst); err == nil {
			return nil, nil, true
		}
	}
	rd := &reader{}
	p.mu.Lock()
	f, ok := p.flights[key]
	follows := false
	if ok {
		f.mu.Lock()
		ok = f.servableLocked()
		if ok {
			f.readers[rd] = struct{}{}
		} else {
			f.replaced, follows = true, true
		}
		f.mu.Unlock()
	}
	if !ok {
		f = &flight{key: key, name: name, dgst: dgst, size: size, changed: make(chan struct{}),
			readers: map[*reader]struct{}{rd: {}}, follows: follows}
		p.flights[key] = f
	}
	f.waiters++
	p.mu.Unlock()
	st := f.state()
	f.mu.Lock()
	finished := ok && st.done && st.err == nil && !f.uncached
	f.mu.Unlock()
	if !ok {
		p.observer.FlightStarted()
		p.fetches.Add(1)
		go p.fetch(context.WithoutCancel(ctx), f, local)
	}
	p.observer.WaitersChanged(1)
	return f, rd, finished
}

// inFlight describes name@dgst from its download in flight, when one has
// started: a request for it then needs no upstream HEAD.
func (p *Puller) inFlight(name reference.Named, dgst digest.Digest) (v1.Descriptor, bool) {
	p.mu.Lock()
	f, ok := p.flights[name.Name()+"@"+dgst.String()]
	p.mu.Unlock()
	if !ok {
		return v1.Descriptor{}, false
	}
	st := f.state()
	if !st.started || st.err != nil {
		return v1.Descriptor{}, false
	}
	f.mu.Lock()
	size := f.size
	f.mu.Unlock()
	if size < 0 {
		return v1.Descriptor{}, false
	}
	return v1.Descriptor{Digest: dgst, Size: size, MediaType: wire.OctetStream}, true
}

// leave ends a client's use of f; the last one out of a finished flight
// removes its spool.
func (p *Puller) leave(f *flight, rd *reader) {
	p.observer.WaitersChanged(-1)
	f.update(func() { delete(f.readers, rd) }) // wakes an uncached download waiting for room
	p.mu.Lock()
	defer p.mu.Unlock()
	f.waiters--
	if f.waiters == 0 && p.flights[f.key] != f {
		f.removeSpool()
	}
}

// removeSpool closes the spool, removes it unless the cache adopted it,
// and releases its reservation (none is left after an adoption).
func (f *flight) removeSpool() {
	if f.spool == nil {
		return
	}
	_ = f.spool.Close()
	if !f.adopted {
		_ = os.Remove(f.spool.Name()) //nolint:gosec // the spool file this process created
	}
	if f.room != nil {
		// The copy through distribution makes its own room.
		f.room.Unreserve(f.spool.Name())
	}
}

// fetch downloads the blob, then commits it to the local store, detached
// from every client. The download is abandoned when it makes no progress
// for the idle timeout, or outlasts the optional cap.
func (p *Puller) fetch(ctx context.Context, f *flight, local distribution.BlobStore) {
	defer p.fetches.Done()
	if p.maxFetchTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, p.maxFetchTime,
			fmt.Errorf("%w: downloading for longer than %s", errStalled, p.maxFetchTime))
		defer cancel()
	}
	log := p.log.WithField("digest", f.dgst).WithField("repository", f.name.Name())
	if err := p.download(ctx, f, local); err != nil {
		log.WithError(redact.Error(err)).Warn("blob download from upstream failed; nothing cached")
		f.update(func() { f.done, f.err = true, err })
	}
	p.release(f)
	p.mu.Lock()
	if p.flights[f.key] == f { // a later download may have taken its place (join)
		delete(p.flights, f.key)
	}
	if f.waiters == 0 {
		f.removeSpool()
	}
	p.mu.Unlock()
}

// download streams the blob into the spool and a local blob writer,
// checks its length and digest, lets the readers finish, and commits.
func (p *Puller) download(ctx context.Context, f *flight, local distribution.BlobStore) (err error) {
	base := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(p.idleTimeout, func() {
		cancel(fmt.Errorf("%w: no progress for %s", errStalled, p.idleTimeout))
	})
	defer idle.Stop()
	defer func() {
		if err != nil && context.Cause(ctx) != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
	}()
	//nolint:gosec // the configured registry, with a validated repository name and digest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.blobURL(f.name, f.dgst.String()), nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req) //nolint:gosec // as above
	if err != nil {
		return fmt.Errorf("GET blob: %w", redact.Error(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &upstreamStatusError{status: resp.StatusCode}
	}
	size := f.size
	if resp.ContentLength >= 0 {
		if size >= 0 && resp.ContentLength != size {
			return fmt.Errorf("upstream GET announces %d bytes, HEAD %d", resp.ContentLength, size)
		}
		size = resp.ContentLength
	}

	spool, room := p.openSpool(ctx, f, size)
	// From here the flight owns the spool (removeSpool).
	f.update(func() { f.started, f.size, f.spool, f.room = true, size, spool, room })

	verifier := f.dgst.Verifier()
	sink := &spoolSink{p: p, f: f, spool: spool, room: room, size: size,
		progress: func() { idle.Reset(p.idleTimeout) }}
	buf := make([]byte, copyBuffer)
	var written int64
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if err := sink.write(ctx, buf[:n], written); err != nil {
				return err
			}
			_, _ = verifier.Write(buf[:n])
			written += int64(n)
			idle.Reset(p.idleTimeout)
			f.update(func() { f.written = written })
			p.renew(f)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read upstream body after %d bytes: %w", written, redact.Error(rerr))
		}
	}
	if size >= 0 && written != size {
		return fmt.Errorf("%w: %d of %d bytes", errTruncated, written, size)
	}
	if !verifier.Verified() {
		return errDigest
	}
	// The checks passed: release the last byte to the readers, then put
	// the spool into the cache, off the clients' path. The flight stays
	// joinable until that is done, and a graceful shutdown waits for it
	// (Puller.Wait).
	f.update(func() { f.done = true })
	idle.Stop()
	if sink.uncached {
		return nil // said when it went uncached
	}
	ctx, stop := context.WithTimeout(context.WithoutCancel(base), p.commitTimeout)
	defer stop()
	p.keep(ctx, f, local, written)
	return nil
}

// keep puts a checked download into the cache: the cache driver adopts
// the spool file when it can (one write and one hash in all), else it is
// copied through distribution's blob writer. A download the driver
// refuses for another reason than the spool being on another filesystem
// (larger than the bound, disk full) is not copied either: it would fail
// the same way, and leave distribution's upload files behind.
func (p *Puller) keep(ctx context.Context, f *flight, local distribution.BlobStore, size int64) {
	log := p.log.WithField("digest", f.dgst)
	if a := p.adopter(); a != nil {
		err := a.Adopt(ctx, f.name.Name(), f.dgst, f.spool.Name(), size)
		if err == nil {
			p.mu.Lock()
			f.adopted = true
			p.mu.Unlock()
			return
		}
		if !errors.Is(err, syscall.EXDEV) {
			log.WithError(err).Warn("cannot cache blob")
			return
		}
		log.WithError(err).Debug("the spool is on another filesystem than the cache; copying the download")
	}
	if f.room != nil {
		// The copy through distribution makes its own room.
		f.room.Unreserve(f.spool.Name())
	}
	if err := p.commit(ctx, local, f.spool, f.dgst, size); err != nil {
		log.WithError(err).Warn("cannot cache blob")
	}
}

// commit copies the checked download in spool into the local store.
func (p *Puller) commit(ctx context.Context, local distribution.BlobStore, spool *os.File, dgst digest.Digest, size int64) error {
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind spool: %w", err)
	}
	bw, err := local.Create(ctx)
	if err != nil {
		return fmt.Errorf("create local blob: %w", err)
	}
	if _, err := io.Copy(bw, spool); err != nil {
		_ = bw.Cancel(context.WithoutCancel(ctx))
		return fmt.Errorf("copy into the local blob: %w", err)
	}
	if _, err := bw.Commit(ctx, v1.Descriptor{Digest: dgst, Size: size, MediaType: wire.OctetStream}); err != nil {
		_ = bw.Cancel(context.WithoutCancel(ctx))
		return fmt.Errorf("commit local blob: %w", err)
	}
	return nil
}

// serve writes the blob (or the client's Range of it) to one client as the
// download makes it available. A download failure after the headers were
// sent ends the response short of its Content-Length, so that the client
// sees an error rather than a complete-looking short body.
func (f *flight) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, p *Puller, rd *reader, hit bool) error {
	for {
		st := f.state()
		if st.started {
			break
		}
		if st.done {
			return clientError(st.err, f.dgst)
		}
		select {
		case <-st.changed:
		case <-ctx.Done():
			return nil // the client went away
		}
	}
	size := f.size // final once started
	start, end, ok := f.writeHeader(w, r, size, hit)
	if !ok {
		return nil
	}
	f.advance(rd, start) // an uncached download need not keep what precedes it
	// The headers go now: a client whose Range starts far ahead of the
	// download knows at once that its bytes are coming.
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, copyBuffer)
	pos := start
	for size < 0 || pos <= end {
		st := f.state()
		done, written, ferr, changed := st.done, st.written, st.err, st.changed
		limit := written
		if size >= 0 {
			limit = min(written, end+1)
		}
		if !done || ferr != nil {
			// Until the download has passed its length and digest
			// checks, the last byte available is held back: no client,
			// whole body or Range, ever holds a complete response whose
			// blob failed them.
			limit--
		}
		if limit > pos {
			n, err := f.readAt(buf[:min(limit-pos, int64(len(buf)))], pos, rd)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return nil // the client went away; the download goes on
				}
				_ = rc.Flush()
				pos += int64(n)
				f.advance(rd, pos)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				p.log.WithError(err).WithField("digest", f.dgst).Warn("read download")
				return abort(ctx, size)
			}
			continue
		}
		if ferr != nil {
			return abort(ctx, size)
		}
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// writeHeader answers r's headers for the blob of size bytes (-1:
// unknown) with the range [start, end] its body is to hold, or answers 416
// to a Range it cannot satisfy (ok false: no body follows).
func (f *flight) writeHeader(w http.ResponseWriter, r *http.Request, size int64, hit bool) (start, end int64, ok bool) {
	rng, ranged, rerr := parseRange(r.Header.Get("Range"), size)
	h := w.Header()
	if errors.Is(rerr, errUnsatisfiable) {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return 0, 0, false
	}
	start, end, status := int64(0), size-1, http.StatusOK
	if ranged {
		start, end, status = rng.start, rng.end, http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
	}
	h.Set("Content-Type", wire.OctetStream)
	h.Set("Docker-Content-Digest", f.dgst.String())
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", `"`+f.dgst.String()+`"`)
	// A download that had finished (checked, being committed) when the
	// request joined it is served from this proxy's disk: a hit.
	if hit {
		h.Set(wire.CacheStatusHeader, wire.CacheHit)
	} else {
		h.Set(wire.CacheStatusHeader, wire.CacheMiss)
	}
	if size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	}
	w.WriteHeader(status)
	return start, end, true
}

// abort ends a response whose body cannot be completed. With a
// Content-Length, returning short of it makes the server close the
// connection; without one, only aborting the handler tells the client.
// The gateway does that outside distribution's app when the request
// carries its flag: a panic inside the app would reach distribution's
// panic handler, which turns it into a logged stack trace.
func abort(ctx context.Context, size int64) error {
	if size < 0 && !cutoff.Request(ctx) {
		panic(http.ErrAbortHandler)
	}
	return nil
}
