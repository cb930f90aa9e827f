package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/distribution/distribution/v3/configuration"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/spf13/cobra"

	"github.com/ecr-proxy/ecr-proxy/internal/blobpath"
)

// wrapGarbageCollect makes distribution's garbage-collect command (gc is
// registry.GCCmd) succeed on storage that holds no blob data, and leaves
// every other case to distribution.
//
// distribution's storage.MarkAndSweep walks /docker/registry/v2/repositories
// (mark), then /docker/registry/v2/blobs (sweep), and fails with "Path not
// found", exit status 1, when either is missing. A new cache has neither; a
// cache whose pulls all failed, or whose only blob was larger than maxsize,
// has repository directories (tag links, upload directories) but no blobs.
// A cron job or an operator then sees a failure where there is nothing to
// collect.
//
// Without any blob data, MarkAndSweep cannot delete anything: it marks and
// deletes through the repositories' revision and layer links, and skips every
// link whose blob data is missing (linkedBlobStore.Enumerate), and it sweeps
// only blob data. So the wrapper asks the configured storage driver whether
// any file exists under the blobs root, stopping at the first; if none, it
// says so and exits 0, which is what MarkAndSweep would conclude if it could
// walk the missing roots. Otherwise distribution's command runs unchanged.
// (Blob data without any repositories, the repositories directory removed
// by hand, still fails in distribution: deleting all of it may be right, but
// is not ours to decide quietly.)
//
// Why not create the missing directories, so that distribution finds them
// empty: both are needed (with repositories alone the sweep fails on
// blobs), a --dry-run would then write, and a garbage-collect run as
// another user (root) than the proxy would leave directories the proxy
// cannot write into. Asking the driver writes nothing and works for any
// driver. The cost is a second driver instance (for lrufilesystem, a second
// index rebuild) when there is something to collect.
//
// The check reads the configuration the way distribution's command does (the
// first argument, else REGISTRY_CONFIGURATION_PATH; REGISTRY_* overrides)
// and constructs the driver with the same factory. It needs nothing else: no
// AWS credentials, no region, no upstream. Any error along the way falls
// through to distribution's command, which reports it.
//
// It also refuses to run while a proxy serves from the same cache (see
// lockCache): distribution's mark and sweep sees only what is linked at
// the moment it marks, and would delete a blob a pull or push is writing
// or has just linked.
func wrapGarbageCollect(gc *cobra.Command) {
	run := gc.Run
	gc.Run = func(cmd *cobra.Command, args []string) {
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		if cfg := gcConfig(args); cfg != nil {
			if root, ok := cfg.Storage.Parameters()["rootdirectory"].(string); ok && root != "" {
				lock, err := lockCache(root, true)
				if err != nil {
					fmt.Fprintln(os.Stderr, "Error:", err)
					os.Exit(1)
				}
				if lock != nil {
					defer lock.Close() //nolint:errcheck // releases the lock
				}
			}
		}
		if where, empty := emptyStorage(ctx, args); empty {
			if quiet, _ := cmd.Flags().GetBool("quiet"); !quiet {
				fmt.Printf("%s holds no blob data: nothing to collect\n", where)
			}
			return
		}
		run(cmd, args)
		if dry, _ := cmd.Flags().GetBool("dry-run"); !dry {
			if cfg := gcConfig(args); cfg != nil {
				if err := reconcileAfterGC(ctx, cfg); err != nil {
					fmt.Fprintln(os.Stderr, "Error:", err)
					os.Exit(1)
				}
			}
		}
	}
}

// gcConfig reads the configuration garbage-collect is given, as
// distribution's command does, or nil on any error (which distribution's
// command then reports).
func gcConfig(args []string) *configuration.Configuration {
	path := os.Getenv("REGISTRY_CONFIGURATION_PATH")
	if len(args) > 0 {
		path = args[0]
	}
	if path == "" {
		return nil
	}
	f, err := os.Open(path) //nolint:gosec // the operator's configuration file
	if err != nil {
		return nil
	}
	defer f.Close() //nolint:errcheck // read only
	cfg, err := configuration.Parse(f)
	if err != nil {
		return nil
	}
	return cfg
}

// cacheLockName is the lock file in a filesystem cache's root directory:
// serve holds a shared lock on it while it runs, garbage-collect an
// exclusive one.
const cacheLockName = ".ecr-proxy.lock"

// lockCache takes the cache lock of the cache at root: shared for serve
// (several proxies may share a cache), exclusive for garbage-collect;
// either fails at once, with what to do, when the other holds it. The
// lock lasts until the returned file is closed or the process exits.
func lockCache(root string, exclusive bool) (*os.File, error) {
	path := filepath.Join(root, cacheLockName)
	flags := os.O_RDONLY | os.O_CREATE
	if exclusive {
		flags = os.O_RDONLY // garbage-collect writes nothing (see wrapGarbageCollect)
	}
	f, err := os.OpenFile(path, flags, 0o644) //nolint:gosec // readable by the proxy's user whoever creates it
	if exclusive && errors.Is(err, fs.ErrNotExist) {
		return nil, nil //nolint:nilnil // no proxy has ever served from this cache
	}
	if err != nil {
		return nil, fmt.Errorf("cache lock %s: %w", path, err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("cache lock %s: %w", path, err)
		}
		if exclusive {
			return nil, fmt.Errorf("a proxy is serving from the cache %s (it holds %s): stop it before garbage-collect, "+
				"which would delete blobs the proxy is writing or serving: %w", root, path, err)
		}
		return nil, fmt.Errorf("garbage-collect is running on the cache %s (it holds %s): start the proxy when it is done: %w", root, path, err)
	}
	return f, nil
}

// serveLock takes serve's shared cache lock when the cache is a
// filesystem directory, so that garbage-collect refuses to run meanwhile;
// closing the returned file releases it.
func serveLock(s *settings) (io.Closer, error) {
	switch s.dist.Storage.Type() {
	case "filesystem", lruDriver:
	default:
		return io.NopCloser(nil), nil
	}
	root, ok := s.dist.Storage.Parameters()["rootdirectory"].(string)
	if !ok || root == "" {
		return io.NopCloser(nil), nil
	}
	return lockCache(root, false)
}

// emptyStorage reports whether the storage configured by args holds no blob
// data, and describes the storage.
func emptyStorage(ctx context.Context, args []string) (string, bool) {
	cfg := gcConfig(args)
	if cfg == nil {
		return "", false
	}
	name := cfg.Storage.Type()
	d, err := factory.Create(ctx, name, cfg.Storage.Parameters())
	if err != nil {
		return "", false
	}
	where := "storage " + name
	if root, ok := cfg.Storage.Parameters()["rootdirectory"]; ok {
		where += fmt.Sprintf(" at %v", root)
	}

	found := false
	err = d.Walk(ctx, blobpath.Root, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		found = true
		return storagedriver.ErrFilledBuffer // stop at the first file
	})
	if err != nil && !isPathNotFound(err) && !errors.Is(err, storagedriver.ErrFilledBuffer) {
		return where, false
	}
	return where, !found
}

func isPathNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}
