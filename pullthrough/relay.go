package pullthrough

import (
	"context"
	"errors"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/redact"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// defaultRelayWindow bounds the bytes an uncached download holds in memory: from
// the position of its slowest client to the last byte received. It is a
// bound per download, however many clients read it.
//
// Why a shared window in memory rather than one upstream fetch per client
// once the spool cannot be written: the disk being full is when the
// proxy is under the most pressure, and multiplying downloads by clients
// would multiply ECR requests, S3 transfer and the time each client waits,
// while one download keeps the guarantee every client has today: the
// length and digest of the whole blob are checked once, before the last
// byte of any response (whole or ranged) leaves. The price is that the
// clients of an uncached download move together, at most the window
// apart; one that stops reading for relayStall (see Puller.relayStall)
// is cut off (its response ends short, so it sees an error and may retry)
// rather than holding the others.
const defaultRelayWindow = 8 << 20

// reader is one client's place in a flight: the first byte it still needs.
// Guarded by the flight's mu.
type reader struct {
	pos     int64
	dropped bool // cut off by an uncached download it held back
}

// uncachedReason classifies why a download cannot be cached: the label of
// Observer.Uncached, and whether err is such a reason at all (else the
// download fails as before).
func uncachedReason(err error) (string, bool) {
	switch {
	case errors.Is(err, lrufs.ErrBlobTooLarge):
		return ReasonTooLarge, true
	case errors.Is(err, lrufs.ErrCacheFull):
		return ReasonCacheFull, true
	case noSpace(err):
		return ReasonDiskFull, true
	}
	return "", false
}

// goUncached switches f, whose spool holds its first spooled bytes (0
// when there is none), to streaming through memory, and says so: a
// warning naming the digest and the cause (at debug level for a download
// that took the place of an uncached one of the same blob, which warned
// already), and the observer's count when reason is one of its reasons
// ("" for another failure of the spool, which is uncached all the same).
func (p *Puller) goUncached(f *flight, spooled int64, reason string, cause error) {
	follows := false
	f.update(func() {
		f.uncached = true
		f.spooled = spooled
		f.relayBase = spooled
		follows = f.follows
	})
	log := p.log.WithField("digest", f.dgst).WithField("repository", f.name.Name()).WithError(redact.Error(cause))
	if reason != "" {
		log = log.WithField("reason", reason)
	}
	if follows {
		log.Debug("cannot cache blob; streaming it to its clients without caching it")
	} else {
		log.Warn("cannot cache blob; streaming it to its clients without caching it")
	}
	if reason != "" {
		p.observer.Uncached(reason)
	}
}

// relayStall is how long an uncached download waits for its slowest
// client to make room in the window before it cuts that client off.
func (p *Puller) relayStall() time.Duration {
	return max(p.idleTimeout/2, time.Millisecond)
}

// relayAppend adds data, received after what is written, to the relay of
// an uncached download, first waiting for its clients to make room in
// the window. A client that holds the window full for relayStall is cut
// off; a download with no client left is abandoned. progress is called
// when the slowest client moves (the download is not idle meanwhile).
func (p *Puller) relayAppend(ctx context.Context, f *flight, data []byte, progress func()) error {
	var stall *time.Timer
	defer func() {
		if stall != nil {
			stall.Stop()
		}
	}()
	last := int64(-1)
	for {
		f.mu.Lock()
		lo := f.trimLocked()
		if len(f.readers) == 0 && f.replaced {
			f.mu.Unlock()
			return errNoClient
		}
		// Every client has read all but the last byte, which is held back
		// until the digest is checked: there is room, whatever the size
		// of data.
		caughtUp := len(f.relay) <= 1
		if caughtUp || len(f.relay)+len(data) <= p.relayWindow {
			f.relay = append(f.relay, data...)
			f.mu.Unlock()
			return nil
		}
		changed := f.changed
		f.mu.Unlock()
		switch {
		case stall == nil:
			stall = time.NewTimer(p.relayStall())
		case lo > last: // the slowest client moved: it is not stalled
			stall.Reset(p.relayStall())
			progress()
		}
		last = lo
		select {
		case <-changed:
		case <-stall.C:
			if !f.dropSlowest() {
				return errNoClient
			}
			stall.Reset(p.relayStall())
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// trimLocked drops from the relay the bytes every client has read, and
// returns the position of the slowest client (-1 when there is none).
// With no client registered, it keeps the bytes: a request's Stat leaves
// the flight before its ServeBlob joins it again.
func (f *flight) trimLocked() int64 {
	end := f.relayBase + int64(len(f.relay))
	lo, found := end, false
	for r := range f.readers {
		if !r.dropped {
			lo, found = min(lo, r.pos), true
		}
	}
	if !found {
		return -1
	}
	if lo > f.relayBase {
		f.relay = f.relay[lo-f.relayBase:]
		f.relayBase = lo
		if len(f.relay) == 0 {
			f.relay = nil // let the backing array go
		}
	}
	return lo
}

// dropSlowest cuts off the clients at the lowest position of the relay
// and reports whether any client is left to serve.
func (f *flight) dropSlowest() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	lo := int64(-1)
	for r := range f.readers {
		if !r.dropped && (lo < 0 || r.pos < lo) {
			lo = r.pos
		}
	}
	if lo < 0 {
		return false
	}
	left := false
	for r := range f.readers {
		switch {
		case r.dropped:
		case r.pos == lo:
			r.dropped = true
		default:
			left = true
		}
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return left
}

// servableLocked reports whether a new client, reading from the start,
// can be served by f: always, unless f is uncached and has dropped bytes
// from its relay.
func (f *flight) servableLocked() bool {
	return !f.uncached || f.relayBase == f.spooled
}

// readAt reads bytes of the download at pos, below what is written:
// from the spool, or for an uncached download past its spooled bytes,
// from the relay.
func (f *flight) readAt(b []byte, pos int64, r *reader) (int, error) {
	f.mu.Lock()
	if r.dropped {
		f.mu.Unlock()
		return 0, errLeftBehind
	}
	uncached, spooled, spool := f.uncached, f.spooled, f.spool
	if uncached && pos >= spooled {
		defer f.mu.Unlock()
		if pos < f.relayBase || pos >= f.relayBase+int64(len(f.relay)) {
			return 0, errLeftBehind
		}
		return copy(b, f.relay[pos-f.relayBase:]), nil
	}
	f.mu.Unlock()
	if uncached {
		b = b[:min(int64(len(b)), spooled-pos)]
	}
	return spool.ReadAt(b, pos)
}

// advance records that r has read up to pos; an uncached download
// waiting for room in its window is woken.
func (f *flight) advance(r *reader, pos int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r.pos = pos
	if f.uncached {
		close(f.changed)
		f.changed = make(chan struct{})
	}
}
