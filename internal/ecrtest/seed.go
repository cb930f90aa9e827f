package ecrtest

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// seedOptions write straight into the backing registry, in process: no
// authentication, no counters, no faults.
func (e *Emulator) seedOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(authn.Anonymous),
		remote.WithTransport(handlerTransport{h: e.backing}),
	}
}

func (e *Emulator) seedRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(e.RegistryHost()+"/"+ref, name.Insecure, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", ref, err)
	}
	return r, nil
}

// Seed writes img to ref ("team/app:1.2" or "team/app@sha256:…", without
// registry host) in the backing registry and returns the manifest digest.
// Seeding is not counted and needs no token.
func (e *Emulator) Seed(ctx context.Context, ref string, img v1.Image) (digest string, err error) {
	r, err := e.seedRef(ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, e.seedOptions(ctx)...); err != nil {
		return "", fmt.Errorf("seeding %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("computing digest of %s: %w", ref, err)
	}
	return d.String(), nil
}

// SeedIndex writes idx and its images to ref and returns the index digest.
func (e *Emulator) SeedIndex(ctx context.Context, ref string, idx v1.ImageIndex) (string, error) {
	r, err := e.seedRef(ref)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(r, idx, e.seedOptions(ctx)...); err != nil {
		return "", fmt.Errorf("seeding index %s: %w", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", fmt.Errorf("computing digest of %s: %w", ref, err)
	}
	return d.String(), nil
}

// SeedTagName is the name of the i-th tag written by SeedTags; names sort
// in the order of i.
func SeedTagName(i int) string { return fmt.Sprintf("tag-%05d", i) }

// SeedTags writes one small image to repo under n tags, SeedTagName(0) to
// SeedTagName(n-1), for pagination tests.
func (e *Emulator) SeedTags(ctx context.Context, repo string, n int) error {
	if n <= 0 {
		return nil
	}
	img, err := RandomImage(1, 256)
	if err != nil {
		return err
	}
	if _, err := e.Seed(ctx, repo+":"+SeedTagName(0), img); err != nil {
		return err
	}
	for i := 1; i < n; i++ {
		t, err := name.NewTag(e.RegistryHost()+"/"+repo+":"+SeedTagName(i), name.Insecure)
		if err != nil {
			return fmt.Errorf("parsing tag: %w", err)
		}
		if err := remote.Tag(t, img, e.seedOptions(ctx)...); err != nil {
			return fmt.Errorf("tagging %s: %w", t, err)
		}
	}
	return nil
}
