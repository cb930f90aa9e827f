package pullthrough

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/reference"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/stale"
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

// Get resolves tag locally inside the revalidation window, else asks
// ECR: a tag ECR confirms is kept locally, one it does not know (404) is
// dropped locally and unknown, a denial is said as such, and only while
// ECR is unavailable is the local tag served, marked stale. The window
// restarts only on an answer ECR confirmed.
func (t *tagService) Get(ctx context.Context, tag string) (v1.Descriptor, error) {
	key := t.name.Name() + ":" + tag
	t.p.tagMu.Lock()
	checked, ok := t.p.tagChecked[key]
	t.p.tagMu.Unlock()
	fresh := ok && t.p.tagTTL > 0 && t.p.now().Sub(checked) < t.p.tagTTL
	if w := t.p.tagWindow(); !fresh && w != nil {
		fresh = w.TagChecked(ctx, key) // another replica checked it
	}
	if fresh {
		if desc, err := t.localTag(ctx, tag); err == nil {
			return desc, nil
		}
	}
	c := t.p.checkTag(ctx, t.name, tag)
	switch c.answer {
	case tagConfirmed:
		repo, err := localRepo(ctx, t.local, t.name)
		if err != nil {
			return v1.Descriptor{}, err
		}
		if err := repo.Tags(ctx).Tag(ctx, tag, c.desc); err != nil {
			if !noSpace(err) {
				return v1.Descriptor{}, t.p.storageError(err)
			}
			// The disk is full: ECR's answer is served, not kept (and
			// the window not started, there being no local tag).
			t.p.notCached(t.name, "tag", tag, err)
			return c.desc, nil
		}
		t.p.noteTagChecked(key)
		return c.desc, nil
	case tagNoDigest:
		// distribution's proxy asks again with a GET.
		desc, err := t.TagService.Get(ctx, tag)
		if err == nil {
			t.p.noteTagChecked(key)
		}
		return desc, err
	case tagUnavailable:
		return t.serveStale(ctx, tag, c)
	}
	return v1.Descriptor{}, t.refused(ctx, key, tag, c)
}

// refused drops the local tag when ECR does not know it, and turns ECR's
// answer into the client's error. distribution's manifest handler
// type-switches on ErrTagUnknown, which is therefore returned unwrapped.
func (t *tagService) refused(ctx context.Context, key, tag string, c tagCheck) error {
	log := t.p.log.WithFields(logrus.Fields{"repository": t.name.Name(), "tag": tag, "status": c.status})
	switch c.answer {
	case tagGone:
		t.p.tagMu.Lock()
		delete(t.p.tagChecked, key)
		t.p.tagMu.Unlock()
		if w := t.p.tagWindow(); w != nil {
			w.ForgetTag(ctx, key)
		}
		if repo, err := localRepo(ctx, t.local, t.name); err == nil {
			if err := repo.Tags(ctx).Untag(ctx, tag); err == nil {
				log.Info("ECR no longer has this tag; dropped it from the cache")
			}
		}
		return distribution.ErrTagUnknown{Tag: tag}
	case tagDenied:
		log.Warn("ECR denies the proxy this tag")
		return errcode.ErrorCodeDenied.WithMessage(fmt.Sprintf(
			"ECR denied the proxy access to %s:%s (%d): check the proxy's IAM permissions (ecr:BatchGetImage) and the repository policy",
			t.name.Name(), tag, c.status))
	}
	log.Warn("unexpected ECR answer for a tag")
	return errcode.ErrorCodeUnknown.WithMessage(fmt.Sprintf("ECR answered %d for %s:%s", c.status, t.name.Name(), tag))
}

// serveStale answers with the local tag while ECR is unavailable, and
// says so (X-Cache-Status: STALE and the log); without a local tag the
// client is told ECR is unavailable or rate limiting.
func (t *tagService) serveStale(ctx context.Context, tag string, c tagCheck) (v1.Descriptor, error) {
	desc, err := t.localTag(ctx, tag)
	if err != nil {
		if c.status == http.StatusTooManyRequests {
			return v1.Descriptor{}, errcode.ErrorCodeTooManyRequests.WithMessage("ECR is rate limiting and this tag is not cached; retry later")
		}
		return v1.Descriptor{}, errcode.ErrorCodeUnavailable.WithMessage("ECR is unavailable and this tag is not cached; retry later")
	}
	reason := "ECR unavailable: " + c.err.Error()
	stale.Mark(ctx, reason)
	t.p.log.WithFields(logrus.Fields{"repository": t.name.Name(), "tag": tag, "reason": reason}).
		Warn("serving the cached tag without ECR's confirmation (stale)")
	return desc, nil
}

// localTag is tag in the local store.
func (t *tagService) localTag(ctx context.Context, tag string) (v1.Descriptor, error) {
	repo, err := localRepo(ctx, t.local, t.name)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return repo.Tags(ctx).Get(ctx, tag)
}

// noteTagChecked starts the revalidation window of key.
func (p *Puller) noteTagChecked(key string) {
	p.tagMu.Lock()
	defer p.tagMu.Unlock()
	if len(p.tagChecked) >= maxHeadCache {
		clear(p.tagChecked)
	}
	p.tagChecked[key] = p.now()
	if w := p.tagWindow(); w != nil {
		w.NoteTagChecked(context.Background(), key, p.tagTTL)
	}
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
