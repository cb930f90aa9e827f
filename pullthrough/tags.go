package pullthrough

import (
	"context"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// tagService serves a tag from the local store when ECR was asked about
// it less than tagTTL ago.
type tagService struct {
	distribution.TagService
	p     *Puller
	local distribution.Namespace
	name  reference.Named
}

// Get resolves tag locally inside the revalidation window, else through
// distribution's proxy (ECR first, local on failure), remembering when.
func (t *tagService) Get(ctx context.Context, tag string) (v1.Descriptor, error) {
	key := t.name.Name() + ":" + tag
	t.p.tagMu.Lock()
	checked, ok := t.p.tagChecked[key]
	t.p.tagMu.Unlock()
	if ok && time.Since(checked) < t.p.tagTTL {
		if repo, err := localRepo(ctx, t.local, t.name); err == nil {
			if desc, err := repo.Tags(ctx).Get(ctx, tag); err == nil {
				return desc, nil
			}
		}
	}
	desc, err := t.TagService.Get(ctx, tag)
	if err != nil {
		return desc, err
	}
	t.p.tagMu.Lock()
	if len(t.p.tagChecked) >= maxHeadCache {
		clear(t.p.tagChecked)
	}
	t.p.tagChecked[key] = time.Now()
	t.p.tagMu.Unlock()
	return desc, nil
}
