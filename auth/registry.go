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

// ResolveRegion picks the region tokens are minted in: the first non-empty
// of explicit (the configuration), awsRegion (AWS_REGION), awsDefaultRegion
// (AWS_DEFAULT_REGION) and the region in registryURL. It returns
// ErrNoRegion, wrapped with the ways to set one, when none is found.
func ResolveRegion(explicit, awsRegion, awsDefaultRegion, registryURL string) (string, error) {
	for _, r := range []string{explicit, awsRegion, awsDefaultRegion} {
		if r = strings.TrimSpace(r); r != "" {
			return r, nil
		}
	}
	reg, err := ParseRegistryURL(registryURL)
	if err != nil {
		return "", fmt.Errorf("%w for %q: set ecr.region in the configuration or AWS_REGION in the environment (%w)",
			ErrNoRegion, registryURL, err)
	}
	return reg.Region, nil
}
