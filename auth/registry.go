package auth

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// ecrHost matches the private registry host names of every AWS partition:
// commercial, FIPS, China, dual-stack, EU sovereign and the isolated
// regions. Groups: account, "-fips" or empty, region, DNS suffix.
var ecrHost = regexp.MustCompile(`^(\d{12})\.dkr[.-]ecr(-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\.` +
	`(amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$`)

// Registry describes an ECR private registry parsed from its host name.
type Registry struct {
	// AccountID is the 12-digit AWS account that owns the registry.
	AccountID string
	// Region is the AWS region of the registry.
	Region string
	// FIPS is true for FIPS endpoints (dkr.ecr-fips / dkr-ecr-fips).
	FIPS bool
	// DNSSuffix is the partition's DNS suffix, such as "amazonaws.com".
	DNSSuffix string
}

// ParseRegistryURL reads an ECR registry from a URL or a bare host name,
// with or without scheme, port or path. It returns ErrNotECR, wrapped,
// when the host is not an ECR private registry host.
func ParseRegistryURL(raw string) (Registry, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Registry{}, fmt.Errorf("parse registry URL %q: %w", raw, err)
	}
	m := ecrHost.FindStringSubmatch(strings.ToLower(u.Hostname()))
	if m == nil {
		return Registry{}, fmt.Errorf("%q: %w", u.Hostname(), ErrNotECR)
	}
	return Registry{AccountID: m[1], FIPS: m[2] != "", Region: m[3], DNSSuffix: m[4]}, nil
}

// RegionChoice is the region tokens are minted in, and what the log
// should say about it.
type RegionChoice struct {
	// Region is where GetAuthorizationToken is called.
	Region string
	// Note, when not empty, says that a region set elsewhere differs from
	// the one in the registry host, which one is used and why: a line to
	// log once, when the process starts. It holds no secret.
	Note string
}

// ResolveRegion is ChooseRegion without its note: the region tokens are
// minted in.
func ResolveRegion(explicit, awsRegion, awsDefaultRegion, registryURL string) (string, error) {
	c, err := ChooseRegion(explicit, awsRegion, awsDefaultRegion, registryURL)
	return c.Region, err
}

// ChooseRegion picks the region tokens are minted in. An ECR token is
// valid only for the registries of the region it is minted in, so the
// region in an ECR registry host (see ParseRegistryURL) wins over
// awsRegion (AWS_REGION) and awsDefaultRegion (AWS_DEFAULT_REGION), as in
// amazon-ecr-credential-helper: ECS and CodeBuild set AWS_REGION to their
// own region, which need not be the registry's. Only explicit (the
// configuration's ecr.region) wins over the host. When the host names no
// region (a VPC endpoint, a mirror, a test registry), the first non-empty
// of awsRegion and awsDefaultRegion is used. The choice's Note says so
// when the region used differs from one set elsewhere. ChooseRegion
// returns ErrNoRegion, wrapped with the ways to set one, when none is
// found.
func ChooseRegion(explicit, awsRegion, awsDefaultRegion, registryURL string) (RegionChoice, error) {
	explicit = strings.TrimSpace(explicit)
	reg, parseErr := ParseRegistryURL(registryURL)
	host := ""
	if parseErr == nil {
		host = reg.Region
	}
	if explicit != "" {
		c := RegionChoice{Region: explicit}
		if host != "" && !strings.EqualFold(explicit, host) {
			c.Note = fmt.Sprintf("ecr.region %s differs from %s, the region of the ECR registry host %s; tokens are minted in %s, as configured, "+
				"but ECR accepts a token only in the region it was minted in: leave ecr.region unset to use the host's region",
				explicit, host, hostOf(registryURL), explicit)
		}
		return c, nil
	}
	if host != "" {
		c := RegionChoice{Region: host}
		for _, v := range []struct{ name, region string }{{"AWS_REGION", awsRegion}, {"AWS_DEFAULT_REGION", awsDefaultRegion}} {
			if r := strings.TrimSpace(v.region); r != "" {
				if !strings.EqualFold(r, host) {
					c.Note = fmt.Sprintf("%s %s differs from %s, the region of the ECR registry host %s; tokens are minted in %s, the host's region, "+
						"because ECR accepts a token only in the region it was minted in (ECS and CodeBuild set AWS_REGION to their own region); "+
						"set ecr.region to override", v.name, r, host, hostOf(registryURL), host)
				}
				break
			}
		}
		return c, nil
	}
	for _, r := range []string{awsRegion, awsDefaultRegion} {
		if r = strings.TrimSpace(r); r != "" {
			return RegionChoice{Region: r}, nil
		}
	}
	return RegionChoice{}, fmt.Errorf("%w for %q: set ecr.region in the configuration or AWS_REGION in the environment (%w)",
		ErrNoRegion, registryURL, parseErr)
}

// hostOf is the host name in a registry URL or bare host, for messages.
func hostOf(registryURL string) string {
	s := registryURL
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	if u, err := url.Parse(s); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return registryURL
}
