package pullthrough

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ecr-proxy/ecr-proxy/internal/redact"
	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

type headEntry struct {
	desc v1.Descriptor
	at   time.Time
}

// stat asks ECR for a blob's size without downloading it: one HEAD for
// all concurrent callers, reused for headCacheTTL.
func (p *Puller) stat(ctx context.Context, name reference.Named, dgst digest.Digest) (v1.Descriptor, error) {
	key := name.Name() + "@" + dgst.String()
	p.headMu.Lock()
	if e, ok := p.headSeen[key]; ok && p.now().Sub(e.at) < headCacheTTL {
		p.headMu.Unlock()
		return e.desc, nil
	}
	p.headMu.Unlock()

	ch := p.heads.DoChan(key, func() (any, error) {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		//nolint:gosec // the configured registry, with a validated repository name and digest
		req, err := http.NewRequestWithContext(hctx, http.MethodHead, p.blobURL(name, dgst.String()), nil)
		if err != nil {
			return nil, err
		}
		resp, err := p.client.Do(req) //nolint:gosec // as above
		if err != nil {
			return nil, fmt.Errorf("HEAD blob: %w", redact.Error(err))
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, &upstreamStatusError{status: resp.StatusCode}
		}
		desc := v1.Descriptor{Digest: dgst, Size: resp.ContentLength, MediaType: wire.OctetStream}
		if desc.Size < 0 {
			if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil {
				desc.Size = n
			}
		}
		p.remember(key, desc)
		return desc, nil
	})
	select {
	case <-ctx.Done():
		return v1.Descriptor{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return v1.Descriptor{}, r.Err
		}
		return r.Val.(v1.Descriptor), nil //nolint:forcetypeassert // the only type stored
	}
}

func (p *Puller) remember(key string, desc v1.Descriptor) {
	p.headMu.Lock()
	defer p.headMu.Unlock()
	if len(p.headSeen) >= maxHeadCache {
		clear(p.headSeen)
	}
	p.headSeen[key] = headEntry{desc: desc, at: p.now()}
}
