package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/pullthrough"
	"github.com/ecr-proxy/ecr-proxy/pushthrough"
)

// installPullthrough registers the pullthrough repository middleware with
// distribution (once per process) and names it in the configuration; its
// InitRegistry still has to be given the local namespace
// (installLocalNamespace).
func installPullthrough(s *settings, rt http.RoundTripper, spool string, obs pullthrough.Observer, more ...pullthrough.Option) (*pullthrough.Puller, error) {
	// proxy.cachewritetimeout bounds the local commit, as in
	// distribution; downloads are bounded by progress (ecr.fetchidletimeout)
	// and optionally in total (ecr.fetchmaxtime).
	var commitTimeout = pullthrough.DefaultCommitTimeout
	if t := s.dist.Proxy.CacheWriteTimeout; t != nil && *t > 0 {
		commitTimeout = *t
	}
	p, err := pullthrough.New(s.dist.Proxy.RemoteURL, rt, append([]pullthrough.Option{
		pullthrough.WithSpoolDir(spool),
		pullthrough.WithCommitTimeout(commitTimeout),
		pullthrough.WithIdleTimeout(s.ecr.FetchIdleTimeout),
		pullthrough.WithMaxFetchTime(s.ecr.FetchMaxTime),
		pullthrough.WithTagTTL(s.ecr.TagTTL),
		pullthrough.WithObserver(obs),
		pullthrough.WithLogger(logrus.StandardLogger().WithField("component", "pullthrough"))}, more...)...)
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
		// No cache directory to spool beside (s3, inmemory): a directory
		// of this process's own under the system's temporary one, so
		// that the start-up cleanup never touches another proxy's spool
		// on the same host. serve removes it at exit.
		d, err := os.MkdirTemp("", "ecr-proxy-spool-")
		if err != nil {
			return "", fmt.Errorf("spool directory in %q (ecr.spooldir, SPOOL_DIR unset): %w", os.TempDir(), err)
		}
		return d, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("spool directory %q (ecr.spooldir, SPOOL_DIR): %w", dir, err)
	}
	return dir, nil
}

// privateSpool reports whether spool is the directory spoolDir made for
// this process alone (no ecr.spooldir and no cache directory).
func privateSpool(s *settings, spool string) bool {
	return s.ecr.SpoolDir == "" && strings.HasPrefix(filepath.Base(spool), "ecr-proxy-spool-") &&
		filepath.Dir(spool) == filepath.Clean(os.TempDir())
}

// removeSpools deletes the spool files a previous run left (killed, or
// crashed, mid-download): only this program's, as the spool directory
// may be the system's temporary one.
func removeSpools(dir string) (int, error) {
	n := 0
	for _, pattern := range []string{pullthrough.SpoolPattern, pushthrough.SpoolPattern} {
		files, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return n, err
		}
		for _, f := range files {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// uploadRemover is a cache driver that can delete leftover uploads
// (lrufs.Driver).
type uploadRemover interface {
	RemoveUploads(ctx context.Context) (int, error)
}

// removeLeftovers deletes, before the proxy takes requests, what a
// previous run left outside the cache's bound: spool files and
// distribution's upload directories.
func removeLeftovers(ctx context.Context, log logrus.FieldLogger, spool string, cache any) {
	if n, err := removeSpools(spool); err != nil {
		log.WithError(err).Warn("cannot remove leftover spool files")
	} else if n > 0 {
		log.WithField("files", n).Info("removed spool files left by a previous run")
	}
	r, ok := cache.(uploadRemover)
	if !ok {
		return
	}
	if n, err := r.RemoveUploads(ctx); err != nil {
		log.WithError(err).Warn("cannot remove leftover uploads")
	} else if n > 0 {
		log.WithField("uploads", n).Info("removed uploads left by a previous run")
	}
}
