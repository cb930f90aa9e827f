package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"go.yaml.in/yaml/v2"

	ecrauth "github.com/ecr-proxy/ecr-proxy/auth"
	"github.com/ecr-proxy/ecr-proxy/gateway"
)

// ecrSettings is the "ecr" section of the configuration file, next to
// distribution's own sections.
type ecrSettings struct {
	// Region to mint tokens in; default the region in proxy.remoteurl,
	// then AWS_REGION, then AWS_DEFAULT_REGION (see auth.ChooseRegion).
	Region string `yaml:"region"`
	// RenewInterval is the longest a token is used before renewal.
	RenewInterval time.Duration `yaml:"renewinterval"`
	// Resolver is the DNS server (ip:port) used for upstream host names;
	// empty means the system resolver.
	Resolver string `yaml:"resolver"`
	// TrustedProxies are the CIDRs (or addresses) of the reverse proxies
	// and load balancers whose X-Forwarded-Proto and X-Forwarded-Host are
	// believed, for the upload Locations of pushes; from any other peer
	// these headers are ignored.
	TrustedProxies []string `yaml:"trustedproxies"`
	// TagTTL is the tag revalidation window: a tag resolved from ECR less
	// than this ago is served without asking ECR again. 0 asks every time.
	TagTTL time.Duration `yaml:"tagttl"`
	// SpoolDir holds blob downloads in flight; default: next to the
	// cache (filesystem drivers) or the system's temporary directory.
	SpoolDir string `yaml:"spooldir"`
	// FetchIdleTimeout abandons a blob download that receives nothing
	// for this long (default 1m); a slow but live one goes on.
	FetchIdleTimeout time.Duration `yaml:"fetchidletimeout"`
	// FetchMaxTime caps a whole blob download; 0 (default) sets no cap.
	FetchMaxTime time.Duration `yaml:"fetchmaxtime"`
	// Push is how writes reach ECR: "" (writes need the auth: section's
	// credentials; without one the start is refused), "anonymous" (without
	// an auth: section, anyone who reaches the port pushes with the
	// proxy's AWS identity) or "disabled" (writes are refused).
	Push string `yaml:"push"`
	// Delete is "enabled" to forward DELETE of manifests and blobs to ECR;
	// "" or "disabled" (the default) refuses them with 405.
	Delete string `yaml:"delete"`
}

// Push modes, as the start-up log names them.
const (
	pushAuthenticated = "authenticated"
	pushAnonymous     = "anonymous"
	pushDisabled      = "disabled"
)

// settings is the whole configuration of the serve command.
type settings struct {
	dist *configuration.Configuration
	ecr  ecrSettings
	// server holds ecr-proxy's own keys of the http section.
	server serverLimits
	// region is the resolved region.
	region string
	// notes are messages for the log, once it is configured.
	notes []string
	// warnings are logged at warning level, once the log is configured.
	warnings []string
	// envOnly says there is no configuration file (the seed's mode).
	envOnly bool
	// push is the push mode (pushAuthenticated, pushAnonymous,
	// pushDisabled); deleteEnabled says DELETE is forwarded to ECR.
	push          string
	deleteEnabled bool
}

// configPath returns the configuration file named by args or by
// REGISTRY_CONFIGURATION_PATH, as distribution does, or "" when there is
// none and the seed's ECR variable configures the proxy alone.
func configPath(args []string, lookup lookupFunc) (string, error) {
	if len(args) > 0 {
		return args[0], nil
	}
	if p, ok := lookup("REGISTRY_CONFIGURATION_PATH"); ok && p != "" {
		return p, nil
	}
	if v, ok := lookup(envECR); ok && strings.TrimSpace(v) != "" {
		return "", nil
	}
	return "", errors.New("no configuration: give a configuration file (or REGISTRY_CONFIGURATION_PATH), " +
		"or set ECR and PORT to configure the proxy from the environment")
}

// loadSettings reads the configuration file (path "" means the built-in
// base for environment-only use), applies the seed's variables and
// distribution's REGISTRY_* overrides, and checks everything ecr-proxy
// depends on. Errors name the key or variable and the value.
func loadSettings(path string, lookup lookupFunc) (*settings, error) {
	raw := []byte(envOnlyBase)
	source := "environment"
	if path != "" {
		var err error
		if raw, err = os.ReadFile(path); err != nil { //nolint:gosec // the operator's configuration file
			return nil, fmt.Errorf("read configuration: %w", err)
		}
		source = path
	}
	dist, err := configuration.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", source, err)
	}
	var doc struct {
		ECR  ecrSettings  `yaml:"ecr"`
		HTTP serverLimits `yaml:"http"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: sections ecr and http: %w", source, err)
	}
	s := &settings{dist: dist, ecr: doc.ECR, server: doc.HTTP, envOnly: path == ""}
	env := &seedEnv{lookup: lookup}
	if err := env.apply(s, path == ""); err != nil {
		return nil, err
	}
	s.notes = env.notes
	if err := s.check(lookup); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return s, nil
}

// check validates the configuration; each error names the key and value.
func (s *settings) check(lookup lookupFunc) error {
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
	if s.ecr.FetchIdleTimeout < 0 {
		return fmt.Errorf("ecr.fetchidletimeout %q: want a duration of 0 (the default, 1m) or more, such as 2m", s.ecr.FetchIdleTimeout)
	}
	if s.ecr.FetchMaxTime < 0 {
		return fmt.Errorf("ecr.fetchmaxtime %q: want a duration of 0 (no cap) or more, such as 2h", s.ecr.FetchMaxTime)
	}
	if s.ecr.TagTTL < 0 {
		return fmt.Errorf("ecr.tagttl %q: want a duration of 0 or more, such as 5m", s.ecr.TagTTL)
	}
	if s.ecr.RenewInterval < 0 {
		return fmt.Errorf("ecr.renewinterval %q: want a positive duration such as 6h", s.ecr.RenewInterval)
	}
	if err := s.server.check(); err != nil {
		return err
	}
	if err := s.checkWrites(); err != nil {
		return err
	}
	if _, err := gateway.ParseTrustedProxies(s.ecr.TrustedProxies); err != nil {
		return fmt.Errorf("ecr.trustedproxies: %w", err)
	}
	awsRegion, _ := lookup("AWS_REGION")
	awsDefaultRegion, _ := lookup("AWS_DEFAULT_REGION")
	region, err := ecrauth.ChooseRegion(s.ecr.Region, awsRegion, awsDefaultRegion, p.RemoteURL)
	if err != nil {
		return err
	}
	s.region = region.Region
	if region.Note != "" {
		s.notes = append(s.notes, region.Note)
	}
	return nil
}

// checkWrites sets the push mode and whether DELETE is forwarded. Writes
// are safe by default: DELETE only when enabled, and, with a
// configuration file, push without client authentication only when
// ecr.push says so. The seed's environment-only mode keeps its anonymous
// push, with a warning.
func (s *settings) checkWrites() error {
	switch s.ecr.Delete {
	case "", "disabled":
	case "enabled":
		s.deleteEnabled = true
	default:
		return fmt.Errorf("ecr.delete %q (%s): want enabled or disabled (the default)", s.ecr.Delete, envECRDelete)
	}
	hasAuth := s.dist.Auth.Type() != ""
	switch s.ecr.Push {
	case pushDisabled:
		s.push = pushDisabled
	case pushAnonymous, "":
		switch {
		case hasAuth:
			s.push = pushAuthenticated
		case s.ecr.Push == pushAnonymous:
			s.push = pushAnonymous
		case s.envOnly:
			s.push = pushAnonymous
			s.warnings = append(s.warnings, fmt.Sprintf("WARNING: anonymous push: anyone who reaches this port can push images to ECR "+
				"with the proxy's AWS identity. Set %s=disabled (ecr.push: disabled) to refuse writes, "+
				"or use a configuration file with an auth: section", envECRPush))
		default:
			return errors.New("ecr.push is unset and there is no auth: section: anyone who reaches the port could push to ECR " +
				"with the proxy's AWS identity. Add an auth: section, or set ecr.push: anonymous to allow it, or ecr.push: disabled")
		}
	default:
		return fmt.Errorf("ecr.push %q (%s): want anonymous or disabled, or leave it unset to require the auth: section", s.ecr.Push, envECRPush)
	}
	return nil
}
