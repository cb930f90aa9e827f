// Command registry is ecr-proxy: distribution's registry in proxy mode in
// front of one Amazon ECR registry, minting ECR tokens in-process and
// caching pulled content on a size-bounded disk.
//
//	registry serve config.yml       (or, with no file, the seed's variables)
//	registry garbage-collect [--dry-run] [--delete-untagged] config.yml
//	registry healthcheck            (the image's HEALTHCHECK)
//	registry --version
//
// It reuses distribution's own commands. Its own "serve" replaces
// distribution's so that ECR credentials are set up before the server
// starts; "garbage-collect" is distribution's, refused while a proxy
// serves from the same cache (see gc.go).
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/silly"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/proxy"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"

	_ "github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

func main() {
	registry.RootCmd.Run = rootRun
	describeRoot(registry.RootCmd)
	registry.RootCmd.RemoveCommand(registry.ServeCmd)
	registry.RootCmd.AddCommand(withPrivilegeDrop(newServeCmd()), newGetCmd(), newHealthcheckCmd())
	registry.RootCmd.AddCommand(newVerifyCmd())
	wrapGarbageCollect(registry.GCCmd)
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
