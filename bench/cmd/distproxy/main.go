// Command distproxy is distribution v3.1.2's own registry, built from the
// same module version as ecr-proxy, for the benchmark's "distribution
// proxy mode" system. It is distribution's cmd/registry/main.go without
// the cloud storage drivers and storage middleware the benchmark does not
// use:
//
//	distproxy serve config.yml
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
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
