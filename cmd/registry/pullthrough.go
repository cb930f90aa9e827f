package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/distribution/distribution/v3/configuration"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	"github.com/sirupsen/logrus"

	ecrmetrics "github.com/ecr-proxy/ecr-proxy/metrics"
	"github.com/ecr-proxy/ecr-proxy/pullthrough"
)

// installPullthrough registers the pullthrough repository middleware with
// distribution (once per process) and names it in the configuration; its
// InitRegistry still has to be given the local namespace
// (installLocalNamespace).
func installPullthrough(s *settings, rt http.RoundTripper) (*pullthrough.Puller, error) {
	spool, err := spoolDir(s)
	if err != nil {
		return nil, err
	}
	// proxy.cachewritetimeout bounds the local commit, as in
	// distribution; downloads are bounded by progress (ecr.fetchidletimeout)
	// and optionally in total (ecr.fetchmaxtime).
	var commitTimeout = pullthrough.DefaultCommitTimeout
	if t := s.dist.Proxy.CacheWriteTimeout; t != nil && *t > 0 {
		commitTimeout = *t
	}
	p, err := pullthrough.New(s.dist.Proxy.RemoteURL, rt,
		pullthrough.WithSpoolDir(spool),
		pullthrough.WithCommitTimeout(commitTimeout),
		pullthrough.WithIdleTimeout(s.ecr.FetchIdleTimeout),
		pullthrough.WithMaxFetchTime(s.ecr.FetchMaxTime),
		pullthrough.WithTagTTL(s.ecr.TagTTL),
		pullthrough.WithObserver(ecrmetrics.SingleflightObserver{}),
		pullthrough.WithLogger(logrus.StandardLogger().WithField("component", "pullthrough")))
	if err != nil {
		return nil, err
	}
	if err := repositorymiddleware.Register(pullthrough.RepositoryMiddleware, p.InitRepository); err != nil {
		return nil, fmt.Errorf("register repository middleware: %w", err)
	}
	if s.dist.Middleware == nil {
		s.dist.Middleware = map[string][]configuration.Middleware{}
	}
	s.dist.Middleware["repository"] = append(s.dist.Middleware["repository"], configuration.Middleware{Name: pullthrough.RepositoryMiddleware})
	return p, nil
}

// spoolDir is ecr.spooldir, else a directory beside a filesystem cache
// (same disk, and present in a scratch image), else the temporary one.
func spoolDir(s *settings) (string, error) {
	dir := s.ecr.SpoolDir
	if dir == "" {
		switch s.dist.Storage.Type() {
		case "filesystem", lruDriver:
			if root, ok := s.dist.Storage.Parameters()["rootdirectory"].(string); ok && root != "" {
				dir = filepath.Join(root, "ecr-proxy-spool")
			}
		}
	}
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("ecr.spooldir %q: %w", dir, err)
	}
	return dir, nil
}
