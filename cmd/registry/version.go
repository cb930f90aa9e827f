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

// versionString is what `registry --version` prints: the commit given to
// the linker, else the one Go records from the repository at build time
// (vcs.revision, "-dirty" when the tree had changes).
func versionString() string {
	c := commit
	if c == "" {
		c = "unknown (built without VCS information)"
		if info, ok := debug.ReadBuildInfo(); ok {
			c = vcsCommit(info.Settings, c)
		}
	}
	return fmt.Sprintf("ecr-proxy %s (commit %s), distribution %s, %s", version, c, distversion.Version(), runtime.Version())
}

// vcsCommit returns vcs.revision from settings, with "-dirty" when
// vcs.modified is true, or fallback without a revision.
func vcsCommit(settings []debug.BuildSetting, fallback string) string {
	rev, dirty := "", false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return fallback
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// describeRoot says, in `registry --help`, what the program is.
func describeRoot(root *cobra.Command) {
	root.Use = "registry"
	root.Short = "ecr-proxy: a pull-through cache and push gateway for one Amazon ECR registry"
	root.Long = `ecr-proxy is a pull-through cache and push gateway for one Amazon ECR
registry, built on distribution's registry in proxy mode: clients pull
through a size-bounded local cache and push to ECR,
with no credentials of their own. It mints ECR tokens itself from the AWS
credential chain (instance role, web identity, keys, profiles).

Start it with "registry serve config.yml", or with no file at all from the
environment variables of aws-ecr-http-proxy (ECR, PORT, CACHE_MAX_SIZE, ...):
see "registry serve --help".`
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

// serveHelp is the long help of `registry serve`: its two ways to be
// configured.
const serveHelp = `serve runs the proxy: pulls go through the local cache to ECR, pushes go to
ECR (and into the cache).

It is configured in one of two ways:

  1. A configuration file: distribution's configuration plus an "ecr" section
     (see config.yml.example). Give its path as the argument, or in
     REGISTRY_CONFIGURATION_PATH:

       registry serve /etc/ecr-proxy/config.yml

     distribution's REGISTRY_<SECTION>_<KEY> variables override its keys.
     Unknown keys stop the start.

  2. No file: the environment variables of aws-ecr-http-proxy, as in its
     docker run line:

       ECR=https://123456789012.dkr.ecr.eu-central-1.amazonaws.com PORT=5000 registry serve

     ECR                   the registry URL (required, unless ECR_REGISTRIES)
     ECR_REGISTRIES        several registries by repository prefix, instead of ECR:
                           "shared=URL; prod=URL,role=ARN,externalid=ID" (see README)
     PORT                  the port to listen on (required)
     CACHE_DIR             the cache directory (default /cache)
     CACHE_MAX_SIZE        the cache's bound (default 75g)
     RESOLVER              DNS server for upstream names
     RENEW_INTERVAL_HOURS  token renewal, at most 12 (default 6)
     ENABLE_SSL, SSL_KEY, SSL_CERTIFICATE   TLS
     ECR_PUSH              disabled refuses pushes (default: anonymous, with a warning)
     ECR_DELETE            enabled forwards DELETE to ECR (default: refused)
     METRICS_ADDR          serve Prometheus metrics and health there
     DEBUG_PPROF           true adds pprof to METRICS_ADDR

     The same variables also apply over a file.

AWS credentials and region come from the standard AWS chain (AWS_REGION,
AWS_PROFILE, web identity, instance role, ...).`
