package main

import (
	"context"
	"fmt"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	registrymiddleware "github.com/distribution/distribution/v3/registry/middleware/registry"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// localNamespaceMiddleware is the one distribution registry middleware
// ecr-proxy installs. distribution applies registry middleware to its
// local namespace (the cache) before wrapping that in its proxy: this one
// hands that namespace to the parts that read or write the cache
// directly, and gives the proxy the namespace wrap makes of it.
const localNamespaceMiddleware = "ecr-proxy-local"

// installLocalNamespace registers the middleware (once per process: the
// registry is global) and names it in the configuration, so that each of
// takers is given the local namespace when distribution's app starts, and
// distribution's proxy wrap(namespace) (pullthrough's ServeWhenFull).
func installLocalNamespace(s *settings, wrap func(distribution.Namespace) distribution.Namespace, takers ...registrymiddleware.InitFunc) error {
	err := registrymiddleware.Register(localNamespaceMiddleware,
		func(ctx context.Context, ns distribution.Namespace, d storagedriver.StorageDriver, opts map[string]any) (distribution.Namespace, error) {
			for _, take := range takers {
				if _, err := take(ctx, ns, d, opts); err != nil {
					return nil, err
				}
			}
			return wrap(ns), nil
		})
	if err != nil {
		return fmt.Errorf("register registry middleware %s: %w", localNamespaceMiddleware, err)
	}
	if s.dist.Middleware == nil {
		s.dist.Middleware = map[string][]configuration.Middleware{}
	}
	s.dist.Middleware["registry"] = append(s.dist.Middleware["registry"], configuration.Middleware{Name: localNamespaceMiddleware})
	return nil
}
