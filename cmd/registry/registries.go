package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	ecrauth "github.com/ecr-proxy/ecr-proxy/auth"
)

// registrySettings is one entry of ecr.registries: an ECR registry whose
// repositories are served under a prefix.
type registrySettings struct {
	// Prefix is the first components of the local repository names that
	// go to this registry, without it: "shared" serves shared/base/alpine
	// as base/alpine.
	Prefix string `yaml:"prefix"`
	// URL is the registry's URL, https://<account>.dkr.ecr.<region>.amazonaws.com.
	URL string `yaml:"url"`
	// Region to mint tokens in; default the region in URL, then
	// AWS_REGION, then AWS_DEFAULT_REGION.
	Region string `yaml:"region"`
	// Role is an IAM role ARN to assume (STS AssumeRole) for this
	// registry, such as another account's; empty: the proxy's identity.
	Role string `yaml:"role"`
	// ExternalID is the external ID the role's trust policy requires.
	ExternalID string `yaml:"externalid"`
	// RenewInterval is the longest this registry's token is used before
	// renewal; default ecr.renewinterval.
	RenewInterval time.Duration `yaml:"renewinterval"`
}

// upstreamRegistry is one registry the proxy serves, checked and
// resolved: ecr.registries' entries, or proxy.remoteurl with no prefix.
type upstreamRegistry struct {
	prefix     string // "" for proxy.remoteurl alone
	url        string
	region     string
	role       string
	externalID string
	renew      time.Duration
}

// label names the registry in metrics and logs: its prefix, or its host
// when it has none.
func (u upstreamRegistry) label() string {
	if u.prefix != "" {
		return u.prefix
	}
	return hostOf(u.url)
}

// hostOf is the host[:port] of a registry URL.
func hostOf(registryURL string) string {
	_, host, _ := strings.Cut(registryURL, "://")
	return host
}

// virtualUpstream is proxy.remoteurl when ecr.registries is set: the one
// upstream distribution's proxy knows, which auth.Router maps to the
// registries. The name is reserved (RFC 2606) and never dialled.
const virtualUpstream = "https://ecr-registries.invalid"

// virtualUpstreamNote explains, after the start line, distribution's own
// earlier line naming virtualUpstream, which it logs as it is given.
const virtualUpstreamNote = "ecr.registries: distribution's line \"Registry configured as a proxy cache to " + virtualUpstream +
	"\" names a virtual upstream, a reserved name that is never dialled: each request goes to the registry of its repository's prefix (upstream= on the start line)"

// envECRRegistries configures ecr.registries from the environment.
const envECRRegistries = "ECR_REGISTRIES"

// roleARN matches an IAM role ARN of any partition.
var roleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)

// externalIDPattern is what STS accepts as an external ID.
var externalIDPattern = regexp.MustCompile(`^[\w+=,.@:/-]+$`)

// parseRegistriesEnv reads ECR_REGISTRIES: entries separated by
// semicolons or white space, each "prefix=url" followed by optional
// ",role=arn", ",externalid=id", ",region=r" and ",renewinterval=d"
// (hours or a duration, as RENEW_INTERVAL_HOURS).
func parseRegistriesEnv(v string) ([]registrySettings, error) {
	var out []registrySettings
	entries := strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ' ' || r == '\n' || r == '\t' })
	for i, entry := range entries {
		fields := strings.Split(entry, ",")
		prefix, u, ok := strings.Cut(fields[0], "=")
		if !ok || prefix == "" || u == "" {
			return nil, fmt.Errorf("%s entry %d %q: want prefix=https://<account>.dkr.ecr.<region>.amazonaws.com[,role=<arn>][,externalid=<id>][,region=<region>][,renewinterval=<hours>]",
				envECRRegistries, i+1, entry)
		}
		r := registrySettings{Prefix: prefix, URL: u}
		for _, f := range fields[1:] {
			k, val, _ := strings.Cut(f, "=")
			switch strings.ToLower(k) {
			case "role":
				r.Role = val
			case "externalid":
				r.ExternalID = val
			case "region":
				r.Region = val
			case "renewinterval":
				d, err := renewHours(val)
				if err != nil || d <= 0 {
					return nil, fmt.Errorf("%s entry %d: renewinterval %q: want hours (6, 1.5) or a duration (90m) above 0 and at most 12h", envECRRegistries, i+1, val)
				}
				r.RenewInterval = d
			default:
				return nil, fmt.Errorf("%s entry %d: unknown field %q: want role, externalid, region or renewinterval (an external ID with a comma needs the configuration file)",
					envECRRegistries, i+1, k)
			}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s=%q: no registry", envECRRegistries, v)
	}
	return out, nil
}

// checkRegistries resolves the upstream registries: ecr.registries when
// set (proxy.remoteurl then becomes the router's virtual upstream), else
// proxy.remoteurl with no prefix. Errors name the key and the value.
func (s *settings) checkRegistries(awsRegion, awsDefaultRegion string) error {
	if len(s.ecr.Registries) == 0 {
		region, err := ecrauth.ChooseRegion(s.ecr.Region, awsRegion, awsDefaultRegion, s.dist.Proxy.RemoteURL)
		if err != nil {
			return err
		}
		s.region = region.Region
		if region.Note != "" {
			s.notes = append(s.notes, region.Note)
		}
		s.upstreams = []upstreamRegistry{{url: s.dist.Proxy.RemoteURL, region: s.region, renew: s.ecr.RenewInterval}}
		return nil
	}
	if s.ecr.Region != "" {
		return fmt.Errorf("ecr.region %q applies to proxy.remoteurl alone: with ecr.registries, set region per registry (ecr.registries[].region)", s.ecr.Region)
	}
	prefixes := make([]string, 0, len(s.ecr.Registries))
	for i, r := range s.ecr.Registries {
		field := func(name string) string { return fmt.Sprintf("ecr.registries[%d].%s", i, name) }
		if s.registriesFromEnv {
			field = func(name string) string { return fmt.Sprintf("%s entry %d %s", envECRRegistries, i+1, name) }
		}
		up, note, err := checkRegistry(field, r, s.ecr.RenewInterval, awsRegion, awsDefaultRegion)
		if err != nil {
			return err
		}
		if note != "" {
			s.notes = append(s.notes, note)
		}
		prefixes = append(prefixes, r.Prefix)
		s.upstreams = append(s.upstreams, up)
	}
	if err := ecrauth.CheckPrefixes(prefixes); err != nil {
		if s.registriesFromEnv {
			return fmt.Errorf("%s prefixes: %w", envECRRegistries, err)
		}
		return fmt.Errorf("ecr.registries[].prefix: %w", err)
	}
	s.region = s.upstreams[0].region
	return nil
}

// checkRegistry checks one entry of ecr.registries (or ECR_REGISTRIES),
// whose keys field names in errors, and returns it resolved, with a note
// for the log when its region differs from its host's.
func checkRegistry(field func(string) string, r registrySettings, renew time.Duration, awsRegion, awsDefaultRegion string) (upstreamRegistry, string, error) {
	u, err := registryURL(r.URL)
	if err != nil {
		return upstreamRegistry{}, "", fmt.Errorf("%s %q: %w", field("url"), r.URL, err)
	}
	if err := ecrauth.CheckPrefixes([]string{r.Prefix}); err != nil {
		return upstreamRegistry{}, "", fmt.Errorf("%s: %w", field("prefix"), err)
	}
	if r.Role != "" && !roleARN.MatchString(r.Role) {
		return upstreamRegistry{}, "", fmt.Errorf("%s %q: want an IAM role ARN such as arn:aws:iam::123456789012:role/ecr-proxy-pull", field("role"), r.Role)
	}
	if r.ExternalID != "" && (r.Role == "" || len(r.ExternalID) < 2 || len(r.ExternalID) > 1224 || !externalIDPattern.MatchString(r.ExternalID)) {
		return upstreamRegistry{}, "", fmt.Errorf("%s %q: want 2 to 1224 of letters, digits and +=,.@:/-, with a role", field("externalid"), r.ExternalID)
	}
	if r.RenewInterval < 0 || r.RenewInterval > maxRenewInterval {
		return upstreamRegistry{}, "", fmt.Errorf("%s %q: want a duration above 0 and at most 12h, such as 6h", field("renewinterval"), r.RenewInterval)
	}
	region, err := ecrauth.ChooseRegion(r.Region, awsRegion, awsDefaultRegion, u)
	if err != nil {
		// ChooseRegion's advice (ecr.region) is for proxy.remoteurl.
		return upstreamRegistry{}, "", fmt.Errorf("%s %q (prefix %s): %w: the host names no ECR region; set %s, or AWS_REGION in the environment",
			field("url"), r.URL, r.Prefix, ecrauth.ErrNoRegion, field("region"))
	}
	note := ""
	if host, perr := ecrauth.ParseRegistryURL(u); perr == nil && r.Region != "" && !strings.EqualFold(r.Region, host.Region) {
		note = fmt.Sprintf("%s %s differs from %s, the region of the registry host %s; tokens are minted in %s, as configured, "+
			"but ECR accepts a token only in the region it was minted in: leave it unset to use the host's region",
			field("region"), r.Region, host.Region, hostOf(u), r.Region)
	}
	if r.RenewInterval > 0 {
		renew = r.RenewInterval
	}
	return upstreamRegistry{prefix: r.Prefix, url: u, region: region.Region, role: r.Role, externalID: r.ExternalID, renew: renew}, note, nil
}

// applyRegistriesEnv applies ECR_REGISTRIES over ecr.registries.
func (e *seedEnv) applyRegistriesEnv(s *settings) error {
	v, ok := e.get(envECRRegistries)
	if !ok {
		return nil
	}
	if _, ecr := e.get(envECR); ecr {
		return fmt.Errorf("%s and %s are both set: %s is one registry without a prefix, which would overlap every prefix; keep one",
			envECR, envECRRegistries, envECR)
	}
	regs, err := parseRegistriesEnv(v)
	if err != nil {
		return err
	}
	s.ecr.Registries = regs
	s.registriesFromEnv = true
	return nil
}

// errRemoteURLWithRegistries: both forms of upstream configured.
var errRemoteURLWithRegistries = errors.New("proxy.remoteurl and ecr.registries are both set: proxy.remoteurl is one registry without a prefix, " +
	"which would overlap every prefix; keep one")

// registriesSummary lists the registries for the start-up log:
// "prefix/=url" and "prefix/=region", space-separated.
func (s *settings) registriesSummary() (upstreams, regions string) {
	var u, r []string
	for _, up := range s.upstreams {
		u = append(u, up.prefix+"/="+up.url)
		r = append(r, up.prefix+"/="+up.region)
	}
	return strings.Join(u, " "), strings.Join(r, " ")
}
