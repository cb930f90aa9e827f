package pullthrough

import (
	"context"
	"fmt"
	"os"
)

// reserveStep is how much more room a download of unknown length
// reserves each time its spool reaches what it reserved.
const reserveStep = 64 << 20

// openSpool creates the spool of f and reserves its room (size bytes;
// a download of unknown length reserves as it goes, see spoolWrite) in
// the cache driver, if that reserves. When either fails, f goes uncached
// from its first byte and there is no spool (nil); the returned reserver
// is nil when the driver does not reserve.
func (p *Puller) openSpool(ctx context.Context, f *flight, size int64) (*os.File, SpaceReserver) {
	spool, err := os.CreateTemp(p.spoolDir, SpoolPattern)
	if err != nil {
		p.spoolFailed(f, 0, fmt.Errorf("create spool: %w", err))
		return nil, nil
	}
	room := p.reserver()
	if room == nil || size < 0 {
		return spool, room
	}
	if err := room.Reserve(ctx, spool.Name(), size); err != nil {
		_ = spool.Close()
		_ = os.Remove(spool.Name()) //nolint:gosec // the spool file this process created
		p.spoolFailed(f, 0, err)
		return nil, nil
	}
	return spool, room
}

// spoolFailed makes f uncached because its spool could not be created,
// reserved or written: for lack of room (counted by reason), or for
// another error, after which its clients still get their bytes.
func (p *Puller) spoolFailed(f *flight, spooled int64, err error) {
	reason, _ := uncachedReason(err)
	p.goUncached(f, spooled, reason, err)
}

// spoolSink is where a download's bytes go: its spool file, growing its
// reservation when the length is unknown, until the spool fails for lack
// of room; from then on, the flight's relay.
type spoolSink struct {
	p        *Puller
	f        *flight
	spool    *os.File // nil: uncached from the start
	room     SpaceReserver
	size     int64
	reserved int64
	uncached bool
	progress func() // the download is making progress (its idle timer)
}

// write puts data, which follows the first written bytes, in the spool
// or the relay.
func (s *spoolSink) write(ctx context.Context, data []byte, written int64) error {
	if s.spool == nil && !s.uncached {
		s.uncached = true // openSpool made the flight uncached
	}
	if !s.uncached {
		n, err := s.spoolWrite(ctx, data, written)
		if err == nil {
			return nil
		}
		s.uncached = true
		s.p.spoolFailed(s.f, written+int64(n), err)
		data = data[n:]
	}
	if len(data) == 0 {
		return nil
	}
	return s.p.relayAppend(ctx, s.f, data, s.progress)
}

// spoolWrite writes data to the spool at written, reserving more room
// first when the length is unknown: a step ahead, or exactly what is
// needed when the step does not fit. It returns how much of data the
// spool holds.
func (s *spoolSink) spoolWrite(ctx context.Context, data []byte, written int64) (int, error) {
	if need := written + int64(len(data)); s.room != nil && s.size < 0 && need > s.reserved {
		if err := s.room.Reserve(ctx, s.spool.Name(), need+reserveStep); err == nil {
			s.reserved = need + reserveStep
		} else if err := s.room.Reserve(ctx, s.spool.Name(), need); err == nil {
			s.reserved = need
		} else {
			return 0, err
		}
	}
	n, err := s.spool.Write(data)
	if err != nil {
		return n, fmt.Errorf("write spool: %w", err)
	}
	return n, nil
}
