// Command registry is ecr-proxy: distribution's registry in proxy mode in
// front of one Amazon ECR registry, minting ECR tokens in-process and
// caching pulled content on a size-bounded disk.
//
//	registry serve config.yml
//	registry garbage-collect [--dry-run] [--delete-untagged] config.yml
//	registry --version
//
// It reuses distribution's own commands. Its own "serve" replaces
// distribution's so that ECR credentials are set up before the server
// starts; "garbage-collect" and "--version" are distribution's.
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

	_ "github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

func main() {
	registry.RootCmd.Run = rootRun
	registry.RootCmd.RemoveCommand(registry.ServeCmd)
	registry.RootCmd.AddCommand(withPrivilegeDrop(newServeCmd()), newGetCmd(), newHealthcheckCmd())
	wrapGarbageCollect(registry.GCCmd)
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
