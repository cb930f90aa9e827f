package proxytest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ConfigOptions fill the proxy configuration written by WriteConfig.
type ConfigOptions struct {
	// RemoteURL is the ECR registry URL (the emulator's RegistryURL).
	RemoteURL string
	// Region is written as ecr.region when set.
	Region string
	// RootDirectory is the cache directory.
	RootDirectory string
	// StorageDriver defaults to "lrufilesystem" (unbounded without a
	// maxsize), the cache users run: the seed's variables and
	// config.yml.example both use it.
	StorageDriver string
	// StorageParams are extra driver parameters, such as maxsize.
	StorageParams map[string]string
	// Extra is YAML appended verbatim (top-level sections).
	Extra string
	// LogLevel is log.level; default info.
	LogLevel string
	// ProxyExtra and ECRExtra are "key: value" lines added to the proxy
	// and ecr sections, such as "cachewritetimeout: 2s" or "fetchidletimeout: 2s".
	// The ecr section has "push: anonymous" unless ECRExtra sets push:
	// tests push without client authentication, which ecr-proxy refuses
	// unless the configuration says so.
	ProxyExtra, ECRExtra []string
	// HTTPExtra are "key: value" lines added to the http section, such as
	// "idletimeout: 1s" or "maxconnections: 8".
	HTTPExtra []string
	// DrainTimeout is http.draintimeout; default 30s.
	DrainTimeout time.Duration
}

// WriteConfig writes a proxy configuration into dir and returns its path.
// The registry and debug servers listen on ephemeral loopback ports.
func WriteConfig(dir string, o ConfigOptions) (string, error) {
	level := o.LogLevel
	if level == "" {
		level = "info"
	}
	driver := o.StorageDriver
	if driver == "" {
		driver = "lrufilesystem"
	}
	var params strings.Builder
	for k, v := range o.StorageParams {
		fmt.Fprintf(&params, "    %s: %q\n", k, v)
	}
	ecr := ""
	if o.Region != "" {
		ecr += fmt.Sprintf("  region: %s\n", o.Region)
	}
	push := "  push: anonymous\n"
	for _, l := range o.ECRExtra {
		ecr += "  " + l + "\n"
		if strings.HasPrefix(strings.TrimSpace(l), "push:") {
			push = ""
		}
	}
	ecr = "ecr:\n" + push + ecr
	drain := o.DrainTimeout
	if drain == 0 {
		drain = 30 * time.Second
	}
	httpExtra := ""
	for _, l := range o.HTTPExtra {
		httpExtra += "  " + l + "\n"
	}
	proxyExtra := ""
	for _, l := range o.ProxyExtra {
		proxyExtra += "  " + l + "\n"
	}
	y := fmt.Sprintf(`version: 0.1
log:
  level: %s
  formatter: text
  accesslog:
    disabled: true
storage:
  %s:
    rootdirectory: %s
%s  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
  draintimeout: %v
%s  debug:
    addr: 127.0.0.1:0
    prometheus:
      enabled: true
proxy:
  remoteurl: %s
%s%s%s`, level, driver, o.RootDirectory, params.String(), drain, httpExtra, o.RemoteURL, proxyExtra, ecr, o.Extra)
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		return "", fmt.Errorf("write proxy config: %w", err)
	}
	return path, nil
}
