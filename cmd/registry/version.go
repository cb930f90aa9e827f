package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	distversion "github.com/distribution/distribution/v3/version"
	"github.com/spf13/cobra"
)

// Set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)" ./cmd/registry
var (
	version = "dev"
	commit  = ""
)

// versionString is what `registry --version` prints.
func versionString() string {
	c := commit
	if c == "" {
		c = "unknown"
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	return fmt.Sprintf("ecr-proxy %s (commit %s), distribution %s, %s", version, c, distversion.Version(), runtime.Version())
}

// rootRun replaces distribution's root command action so that --version
// names this project, its commit and the distribution it is built on.
func rootRun(cmd *cobra.Command, _ []string) {
	if v, err := cmd.Flags().GetBool("version"); err == nil && v {
		fmt.Fprintln(cmd.OutOrStdout(), versionString())
		return
	}
	_ = cmd.Usage()
}
