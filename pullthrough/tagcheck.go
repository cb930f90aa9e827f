package pullthrough

import (
	"context"
	"fmt"
	"net/http"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	ecrauth "github.com/ecr-proxy/ecr-proxy/auth"
	"github.com/ecr-proxy/ecr-proxy/internal/redact"
)

// tagAnswer is what ECR's answer about a tag means for the cache.
type tagAnswer int

const (
	tagConfirmed   tagAnswer = iota // ECR named the tag's digest
	tagNoDigest                     // a success without Docker-Content-Digest
	tagGone                         // 404: deleted, or never there
	tagDenied                       // 403 for another reason than the token
	tagUnavailable                  // network error, 5xx, 429, token refused or not minted
	tagOther                        // any other answer
)

// tagCheck is ECR's answer about one tag.
type tagCheck struct {
	answer tagAnswer
	desc   v1.Descriptor // when confirmed
	status int           // the HTTP status, 0 without an answer
	err    error         // why, when not confirmed; holds no secret
}

// checkTag asks ECR for name:tag with a HEAD. A HEAD refused with 401 or
// 403 carries no body to tell a refused token from an IAM denial, so a
// GET follows then, as distribution's own tag service does on errors.
func (p *Puller) checkTag(ctx context.Context, name reference.Named, tag string) tagCheck {
	resp, err := p.manifestRequest(ctx, http.MethodHead, name, tag)
	if err != nil {
		return tagCheck{answer: tagUnavailable, err: fmt.Errorf("HEAD manifest: %w", redact.Error(err))}
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		resp, err = p.manifestRequest(ctx, http.MethodGet, name, tag)
		if err != nil {
			return tagCheck{answer: tagUnavailable, err: fmt.Errorf("GET manifest: %w", redact.Error(err))}
		}
		defer resp.Body.Close()
	}
	return classifyTag(resp)
}

// classifyTag says what resp, ECR's answer about a tag, means.
func classifyTag(resp *http.Response) tagCheck {
	c := tagCheck{status: resp.StatusCode, err: &upstreamStatusError{status: resp.StatusCode}}
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		dgst, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
		if err != nil {
			c.answer, c.err = tagNoDigest, nil
			return c
		}
		c.answer, c.err = tagConfirmed, nil
		c.desc = v1.Descriptor{MediaType: resp.Header.Get("Content-Type"), Size: resp.ContentLength, Digest: dgst}
	case s == http.StatusNotFound:
		c.answer = tagGone
	case s >= 500 || s == http.StatusTooManyRequests:
		c.answer = tagUnavailable
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		c.answer = tagDenied
		if ecrauth.RefusedToken(resp) {
			c.answer = tagUnavailable
			c.err = fmt.Errorf("ECR refused the proxy's token: %w", c.err)
		}
	default:
		c.answer = tagOther
	}
	return c
}

// manifestRequest sends method for the manifest name:ref to ECR, with
// every manifest media type distribution knows accepted.
func (p *Puller) manifestRequest(ctx context.Context, method string, name reference.Named, ref string) (*http.Response, error) {
	u := *p.registry
	u.Path = "/v2/" + name.Name() + "/manifests/" + ref
	u.RawQuery = ""
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	for _, mt := range distribution.ManifestMediaTypes() {
		req.Header.Add("Accept", mt)
	}
	return p.client.Do(req)
}
