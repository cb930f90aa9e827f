package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"go.yaml.in/yaml/v2"

	ecrauth "github.com/ecr-proxy/ecr-proxy/auth"
)

// ecrSettings is the "ecr" section of the configuration file, next to
// distribution's own sections.
type ecrSettings struct {
	// Region to mint tokens in; default AWS_REGION, AWS_DEFAULT_REGION,
	// then the region in proxy.remoteurl.
	Region string `yaml:"region"`
	// RenewInterval is the longest a token is used before renewal.
	RenewInterval time.Duration `yaml:"renewinterval"`
}

// settings is the whole configuration of the serve command.
type settings struct {
	dist *configuration.Configuration
	ecr  ecrSettings
	// region is the resolved region.
	region string
}

// configPath returns the configuration file named by args or by
// REGISTRY_CONFIGURATION_PATH, as distribution does.
func configPath(args []string) (string, error) {
	if len(args) > 0 {
		return args[0], nil
	}
	if p := os.Getenv("REGISTRY_CONFIGURATION_PATH"); p != "" {
		return p, nil
	}
	return "", errors.New("configuration path unspecified: give it as the argument or in REGISTRY_CONFIGURATION_PATH")
}

// loadSettings reads the configuration file, applies distribution's
// REGISTRY_* overrides and checks everything ecr-proxy depends on.
func loadSettings(path string) (*settings, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	dist, err := configuration.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var doc struct {
		ECR ecrSettings `yaml:"ecr"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: ecr: %w", path, err)
	}
	s := &settings{dist: dist, ecr: doc.ECR}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// check validates the configuration; each error names the key and value.
func (s *settings) check() error {
	p := s.dist.Proxy
	if p.RemoteURL == "" {
		return errors.New("proxy.remoteurl is required: the ECR registry URL, such as https://123456789012.dkr.ecr.eu-west-1.amazonaws.com")
	}
	u, err := url.Parse(p.RemoteURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("proxy.remoteurl %q: want https://<account>.dkr.ecr.<region>.amazonaws.com, with no path", p.RemoteURL)
	}
	if p.Username != "" || p.Password != "" {
		return errors.New("proxy.username and proxy.password must be empty: ecr-proxy mints ECR tokens itself from the AWS credential chain")
	}
	if p.Exec != nil {
		return fmt.Errorf("proxy.exec %q must be empty: ecr-proxy mints ECR tokens itself from the AWS credential chain", p.Exec.Command)
	}
	if bd, ok := s.dist.Storage["cache"]["blobdescriptor"]; ok && fmt.Sprint(bd) != "" {
		return fmt.Errorf("storage.cache.blobdescriptor %q must be unset: blobs leave the cache (eviction, TTL, garbage-collect) "+
			"behind a descriptor cache's back, and distribution then serves them as empty 200 responses", fmt.Sprint(bd))
	}
	if s.ecr.RenewInterval < 0 {
		return fmt.Errorf("ecr.renewinterval %q: want a positive duration such as 6h", s.ecr.RenewInterval)
	}
	region, err := ecrauth.ResolveRegion(s.ecr.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"), p.RemoteURL)
	if err != nil {
		return err
	}
	s.region = region
	return nil
}
