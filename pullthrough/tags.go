package pullthrough

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// tagService serves a tag from the local store when ECR was asked about
// it less than tagTTL ago, and lists tags after "last" when the client
// sets no page size (distribution's proxy then lists every tag of ECR and
// ignores "last").
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
	if ok && t.p.tagTTL > 0 && t.p.now().Sub(checked) < t.p.tagTTL {
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
	t.p.tagChecked[key] = t.p.now()
	t.p.tagMu.Unlock()
	return desc, nil
}

// List is distribution's List, except that with no limit (-1) and a
// "last" tag, only the tags sorted after it are returned, as the
// distribution spec asks.
func (t *tagService) List(ctx context.Context, limit int, last string) ([]string, error) {
	if limit >= 0 || last == "" {
		return t.TagService.List(ctx, limit, last)
	}
	all, err := t.TagService.List(ctx, limit, "")
	if err != nil && !errors.Is(err, io.EOF) {
		return all, err
	}
	// io.EOF tells distribution's handler this is the last page.
	return tagsAfter(all, last), io.EOF
}

// tagsAfter returns the tags sorted lexically after last.
func tagsAfter(tags []string, last string) []string {
	out := make([]string, 0, len(tags))
	for _, tag := range tags {
		if tag > last {
			out = append(out, tag)
		}
	}
	slices.Sort(out)
	return out
}
