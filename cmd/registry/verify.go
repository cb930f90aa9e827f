package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/spf13/cobra"

	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// newVerifyCmd is "registry verify": a scrub of the cache. The proxy
// checks a cached blob's size each time it opens it, which catches a
// truncated file but not changed bytes; verify rehashes every blob.
func newVerifyCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "verify <config>",
		Short: "rehash every cached blob and remove those whose content does not match their digest",
		Long: "verify reads every blob in the cache configured by <config> (or REGISTRY_CONFIGURATION_PATH),\n" +
			"hashes it, and removes each one whose content does not match its digest, so that the\n" +
			"proxy fetches it again from ECR on its next pull. It is safe to run beside a serving\n" +
			"proxy. It needs no AWS credentials. Exit status 1 if it could not finish, or if\n" +
			"--dry-run found corrupt blobs.",
		Args:         cobra.MaximumNArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return runVerify(ctx, cmd.OutOrStdout(), args, dryRun)
		},
	}
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "d", false, "report corrupt blobs without removing them")
	return cmd
}

// errCorruptFound is verify's error after a dry run that found corrupt
// blobs: a script sees a failure.
var errCorruptFound = errors.New("corrupt blobs found (not removed: --dry-run)")

// runVerify verifies the cache that the configuration named by args
// (else REGISTRY_CONFIGURATION_PATH) stores in, and writes what it found
// to out.
func runVerify(ctx context.Context, out io.Writer, args []string, dryRun bool) error {
	d, root, err := verifyDriver(args)
	if err != nil {
		return err
	}
	start := time.Now()
	rep, err := d.Verify(ctx, lrufs.VerifyOptions{
		DryRun: dryRun,
		OnCorrupt: func(c lrufs.CorruptBlob) {
			action := "removed"
			switch {
			case dryRun:
				action = "not removed (--dry-run)"
			case !c.Removed:
				action = fmt.Sprintf("NOT removed: %v", c.Err)
			}
			_, _ = fmt.Fprintf(out, "corrupt: %s (%d bytes): %s; %s\n", c.Digest, c.Size, c.Problem, action)
		},
	})
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(out, "verified %d blobs (%d bytes) under %s in %s: %d corrupt, %d removed; %d skipped (digest algorithm not supported), %d deleted or replaced during the run\n",
		rep.Blobs, rep.Bytes, root, time.Since(start).Round(time.Millisecond),
		len(rep.Corrupt), rep.Removed(), rep.Skipped, rep.Vanished)
	switch {
	case len(rep.Corrupt) > rep.Removed() && !dryRun:
		return fmt.Errorf("%d corrupt blobs could not be removed", len(rep.Corrupt)-rep.Removed())
	case len(rep.Corrupt) > 0 && dryRun:
		return errCorruptFound
	}
	return nil
}

// verifyDriver reads the configuration the way garbage-collect does (the
// first argument, else REGISTRY_CONFIGURATION_PATH; REGISTRY_* overrides)
// and opens its cache: lrufilesystem as configured, or the same layout of
// distribution's filesystem driver, unbounded. It returns the driver and
// its root directory.
func verifyDriver(args []string) (*lrufs.Driver, string, error) {
	path := os.Getenv("REGISTRY_CONFIGURATION_PATH")
	if len(args) > 0 {
		path = args[0]
	}
	if path == "" {
		return nil, "", errors.New("verify: no configuration file (argument or REGISTRY_CONFIGURATION_PATH)")
	}
	f, err := os.Open(path) //nolint:gosec // the operator's configuration file
	if err != nil {
		return nil, "", fmt.Errorf("verify: %w", err)
	}
	defer f.Close() //nolint:errcheck // read only
	cfg, err := configuration.Parse(f)
	if err != nil {
		return nil, "", fmt.Errorf("verify: configuration %s: %w", path, err)
	}
	params := cfg.Storage.Parameters()
	var d *lrufs.Driver
	switch typ := cfg.Storage.Type(); typ {
	case lrufs.DriverName:
		d, err = lrufs.FromParameters(params)
	case "filesystem":
		root, _ := params["rootdirectory"].(string)
		d, err = lrufs.New(lrufs.Parameters{RootDirectory: root})
	default:
		return nil, "", fmt.Errorf("verify: storage %q: only %s and filesystem caches can be verified", typ, lrufs.DriverName)
	}
	if err != nil {
		return nil, "", fmt.Errorf("verify: %w", err)
	}
	return d, d.RootDirectory(), nil
}
