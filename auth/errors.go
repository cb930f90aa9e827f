package auth

import "errors"

var (
	// ErrNotECR is returned by ParseRegistryURL for a host that is not an
	// ECR private registry host.
	ErrNotECR = errors.New("not an ECR registry host")

	// ErrNoRegion is returned by ResolveRegion when no region is
	// configured and none can be read from the registry host.
	ErrNoRegion = errors.New("no AWS region")

	// ErrNoToken is returned when GetAuthorizationToken answers without
	// authorization data.
	ErrNoToken = errors.New("ECR returned no authorization data")

	// ErrBadPrefix is returned by CheckPrefixes for a registry prefix
	// that is not a repository name's leading components.
	ErrBadPrefix = errors.New("bad registry prefix")

	// ErrOverlappingPrefixes is returned by CheckPrefixes when two
	// registries' prefixes are equal or one is a path prefix of the other.
	ErrOverlappingPrefixes = errors.New("overlapping registry prefixes")
)

// errMalformedToken says the decoded token is not "user:password"; its
// text never includes the token.
var errMalformedToken = errors.New("not of the form user:password")
