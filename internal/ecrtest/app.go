package ecrtest

import (
	"context"
	"fmt"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"

	// Registers the "filesystem" storage driver.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// newRegistryApp builds the backing distribution registry: filesystem
// storage in dir (the in-memory driver grows an upload's buffer by each
// write, which makes large pushes quadratic), deletes enabled, no upload purging, no prometheus (its collector
// registration is process-global) and no health checks (global registry).
// handlers.NewApp panics on bad configuration; the configuration here is
// fixed, but the panic is turned into an error all the same.
//
// With otherDigests (WithSHA512), an index's children are not checked:
// children put by a sha512 digest are stored under their sha256, which is
// all distribution can look a manifest up by.
func newRegistryApp(ctx context.Context, dir string, otherDigests bool) (app *handlers.App, err error) {
	secret, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": true},
			"maintenance": configuration.Parameters{
				"uploadpurging": map[any]any{"enabled": false},
			},
		},
	}
	cfg.HTTP.Secret = secret
	// ECR accepts non-distributable (foreign) layers; distribution refuses
	// their URLs unless allowed.
	cfg.Validation.Manifests.URLs.Allow = []string{`^https?://`}
	if otherDigests {
		cfg.Validation.Manifests.Indexes.Platforms = "none"
	}
	cfg.Catalog.MaxEntries = 1000
	cfg.Tags.MaxTags = 1000
	cfg.Log.AccessLog.Disabled = true

	defer func() {
		if r := recover(); r != nil {
			app, err = nil, fmt.Errorf("creating registry: %v", r)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}
