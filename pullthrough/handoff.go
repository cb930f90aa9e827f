package pullthrough

import (
	"context"

	"github.com/opencontainers/go-digest"
)

// parked is the place a GET's Stat took in a download, kept for the same
// request's ServeBlob.
//
// distribution calls Stat, then ServeBlob, for one request. The Stat of
// a GET starts (or joins) the download; if it left the download at once,
// a download that finished before ServeBlob came would be gone when it
// came: fine when it was cached, but a blob that could not be cached (too
// large, a full disk) would then be fetched from ECR a second time, and
// an uncached download's bytes in memory would not wait for this client.
// So the Stat's place is parked under distribution's request id, taken
// by ServeBlob, and given up when the request ends if ServeBlob never
// takes it.
type parked struct {
	f  *flight
	rd *reader
}

// park keeps f and rd for the ServeBlob of the request ctx belongs to. It
// reports false, keeping nothing, outside a request.
func (p *Puller) park(ctx context.Context, f *flight, rd *reader) bool {
	id := requestID(ctx)
	if id == "" {
		return false
	}
	p.mu.Lock()
	old, had := p.parked[id]
	p.parked[id] = parked{f: f, rd: rd}
	p.mu.Unlock()
	if had {
		p.leave(old.f, old.rd) // a second Stat in the same request
	}
	context.AfterFunc(ctx, func() {
		p.mu.Lock()
		pk, ok := p.parked[id]
		ok = ok && pk.rd == rd
		if ok {
			delete(p.parked, id)
		}
		p.mu.Unlock()
		if ok {
			p.leave(f, rd)
		}
	})
	return true
}

// unpark takes the place request id's Stat parked in a download of dgst,
// or returns nil. The caller must leave it.
func (p *Puller) unpark(id string, dgst digest.Digest) (*flight, *reader) {
	if id == "" {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pk, ok := p.parked[id]
	if !ok || pk.f.dgst != dgst { // the download may be another repository's (joinOtherDownload)
		return nil, nil
	}
	delete(p.parked, id)
	return pk.f, pk.rd
}
