package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/sirupsen/logrus"

	ecrauth "github.com/ecr-proxy/ecr-proxy/auth"
	"github.com/ecr-proxy/ecr-proxy/gateway"
	"github.com/ecr-proxy/ecr-proxy/internal/wire"
	ecrmetrics "github.com/ecr-proxy/ecr-proxy/metrics"
)

// roleSessionName names the proxy's sessions of a registry's role in
// CloudTrail.
const roleSessionName = "ecr-proxy"

// upstreamSet is what the proxy sends upstream requests through: one
// Transport per registry, each with its own token source, and the
// RoundTripper the rest of the proxy uses: the one registry's Transport,
// or an auth.Router over all of them.
type upstreamSet struct {
	// rt is the RoundTripper for s.dist.Proxy.RemoteURL.
	rt http.RoundTripper
	// router is nil with one registry without a prefix.
	router *ecrauth.Router
	// registries, in the configuration's order.
	registries []upstreamClient
	// trackers are each prefixed registry's upstream tracker, by prefix.
	trackers map[string]*gateway.Upstream
}

// upstreamClient is one registry's token source, AWS configuration and
// metrics (labelled with its registry).
type upstreamClient struct {
	reg    upstreamRegistry
	tokens *ecrauth.TokenSource
	aws    aws.Config
	mets   *ecrmetrics.Metrics
}

// newUpstreams builds a token source and a Transport for every registry
// of s, the Router over them when they have prefixes, and installs no
// global state. base is the AWS configuration of the default credential
// chain; a registry with a role assumes it from there.
func newUpstreams(s *settings, base aws.Config, mets *ecrmetrics.Metrics, upstream *gateway.Upstream) (*upstreamSet, error) {
	set := &upstreamSet{trackers: map[string]*gateway.Upstream{}}
	routes := make([]ecrauth.Route, 0, len(s.upstreams))
	for _, reg := range s.upstreams {
		tracker := upstream
		if reg.prefix != "" {
			// Its own: its failures say nothing of the other registries.
			tracker = gateway.NewUpstream()
			set.trackers[reg.prefix] = tracker
		}
		log := logrus.StandardLogger().WithField("component", "ecr-token")
		if reg.prefix != "" {
			log = log.WithField("registry", reg.label())
		}
		cfg := registryAWSConfig(base, reg)
		regMets := mets.ForRegistry(reg.label())
		tokens, err := ecrauth.NewTokenSource(ecr.NewFromConfig(cfg),
			ecrauth.WithRenewInterval(reg.renew),
			ecrauth.WithMintObserver(regMets.ObserveMint),
			ecrauth.WithLogger(log))
		if err != nil {
			return nil, err
		}
		tr, err := ecrauth.NewTransport(reg.url, tokens,
			ecrauth.WithBase(gateway.UpstreamTimer(regMets.InstrumentTransport(upstreamTransport(s.ecr.Resolver)))),
			ecrauth.WithRoundTripObserver(tracker.Observe))
		if err != nil {
			return nil, err
		}
		set.registries = append(set.registries, upstreamClient{reg: reg, tokens: tokens, aws: cfg, mets: regMets})
		routes = append(routes, ecrauth.Route{Prefix: reg.prefix, URL: reg.url, Transport: tr, Region: reg.region})
		set.rt = tr
	}
	if len(routes) == 1 && routes[0].Prefix == "" {
		return set, nil
	}
	router, err := ecrauth.NewRouter(s.dist.Proxy.RemoteURL, routes)
	if err != nil {
		return nil, fmt.Errorf("ecr.registries: %w", err)
	}
	set.rt, set.router = router, router
	return set, nil
}

// registryAWSConfig is base in the registry's region, with the
// registry's role assumed (from base's credentials) when it has one.
func registryAWSConfig(base aws.Config, reg upstreamRegistry) aws.Config {
	cfg := base.Copy()
	cfg.Region = reg.region
	if reg.role == "" {
		return cfg
	}
	// STS in the registry's region, with base's credentials.
	provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), reg.role, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = roleSessionName
		if reg.externalID != "" {
			o.ExternalID = aws.String(reg.externalID)
		}
	})
	cfg.Credentials = aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = 5 * time.Minute // as loadAWSConfig's
		o.ExpiryWindowJitterFrac = 0.5
	})
	return cfg
}

// run renews every registry's token and logs the identity each uses,
// until ctx ends.
func (set *upstreamSet) run(ctx context.Context, log logrus.FieldLogger) {
	for _, c := range set.registries {
		l := log
		if c.reg.prefix != "" {
			l = log.WithFields(logrus.Fields{"registry": c.reg.label(), "url": c.reg.url, "region": c.reg.region})
		}
		go logIdentity(ctx, l, c.aws)
		go func() { _ = c.tokens.Run(ctx) }()
	}
}

// readiness is the gateway's readiness check: the one registry's API
// version check, or every registry's, one entry each. A registry that
// answers but whose token source holds no valid token, its last mint
// failed (its role refused, the mint denied), is reported as without
// credentials: every request needing its token fails.
func (set *upstreamSet) readiness(remoteURL string) gateway.Option {
	if set.router == nil {
		ping, tokens := pingProbe(remoteURL, set.rt), set.registries[0].tokens
		return gateway.WithReadinessProbe(func(ctx context.Context) error {
			if err := ping(ctx); err != nil {
				return err
			}
			return noCredentials(tokens)
		})
	}
	return gateway.WithRegistriesProbe(func(ctx context.Context) map[string]error {
		results := set.router.PingEach(ctx)
		for _, c := range set.registries {
			if results[c.reg.prefix] == nil {
				results[c.reg.prefix] = noCredentials(c.tokens)
			}
		}
		return results
	})
}

// noCredentials is tokens' mint failure as gateway.ErrNoCredentials, nil
// while it holds a valid token.
func noCredentials(tokens *ecrauth.TokenSource) error {
	if err := tokens.MintFailure(); err != nil {
		return fmt.Errorf("%w: %w", gateway.ErrNoCredentials, err)
	}
	return nil
}

// tracker is the gateway's WithUpstreamFor option: a repository
// request's registry's tracker. Without a router it is nil.
func (set *upstreamSet) tracker(httpPrefix string) gateway.Option {
	if set.router == nil {
		return nil
	}
	route := set.routeOf(httpPrefix)
	return gateway.WithUpstreamFor(func(r *http.Request) *gateway.Upstream {
		if prefix, ok := route(r); ok {
			return set.trackers[prefix]
		}
		return nil
	})
}

// servedObserver is the gateway's WithServedObserver option: a manifest
// or blob GET is counted in the cache metrics of its repository's
// registry, with the registry label of that registry's upstream metrics
// (its prefix, or the one registry's host).
func (set *upstreamSet) servedObserver(httpPrefix string) gateway.Option {
	if set.router == nil {
		return gateway.WithServedObserver(func(_ *http.Request, kind string, hit bool, bytes int64) {
			set.registries[0].mets.ObserveServed(kind, hit, bytes)
		})
	}
	byPrefix := make(map[string]*ecrmetrics.Metrics, len(set.registries))
	for _, c := range set.registries {
		byPrefix[c.reg.prefix] = c.mets
	}
	route := set.routeOf(httpPrefix)
	return gateway.WithServedObserver(func(r *http.Request, kind string, hit bool, bytes int64) {
		// A name under no prefix is refused before anything is served
		// (refuseUnknownPrefixes): there is nothing to count.
		if prefix, ok := route(r); ok {
			byPrefix[prefix].ObserveServed(kind, hit, bytes)
		}
	})
}

// routeOf returns a function giving the registry prefix of a repository
// request under httpPrefix (http.prefix), false for other requests and
// names under no prefix. It needs the router.
func (set *upstreamSet) routeOf(httpPrefix string) func(r *http.Request) (string, bool) {
	httpPrefix = strings.TrimSuffix(httpPrefix, "/")
	return func(r *http.Request) (string, bool) {
		p, ok := strings.CutPrefix(r.URL.Path, httpPrefix)
		if name, _, api := ecrauth.SplitAPIPath(p); ok && api {
			if rt, _, known := set.router.Match(name); known {
				return rt.Prefix, true
			}
		}
		return "", false
	}
}

// refuseUnknownPrefixes answers a repository request whose name is under
// no registry prefix with 404 NAME_UNKNOWN listing the prefixes, before
// distribution (whose proxy would turn the router's answer into a
// misleading MANIFEST_UNKNOWN or BLOB_UNKNOWN) or the push passthrough
// sees it. With client authentication (access not nil) the client must
// pass it first, as for any other name: an anonymous client gets 401,
// never the list of prefixes. Without a router it is next.
func refuseUnknownPrefixes(next http.Handler, router *ecrauth.Router, httpPrefix string, access distauth.AccessController) http.Handler {
	if router == nil {
		return next
	}
	httpPrefix = strings.TrimSuffix(httpPrefix, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := strings.CutPrefix(r.URL.Path, httpPrefix)
		name, _, api := ecrauth.SplitAPIPath(p)
		if !ok || !api {
			next.ServeHTTP(w, r)
			return
		}
		if _, _, known := router.Match(name); known {
			next.ServeHTTP(w, r)
			return
		}
		if !authorizedFor(w, r, access, name) {
			return
		}
		wire.WriteError(w, http.StatusNotFound, "NAME_UNKNOWN", router.UnknownNameMessage(name))
	})
}

// authorizedFor asks access (nil: no client authentication) whether r
// may use repository name as distribution's app would ask it (pull;
// pull and push for writes; delete), and when not answers as
// distribution does: 401 with the challenge, or 403 DENIED.
func authorizedFor(w http.ResponseWriter, r *http.Request, access distauth.AccessController, name string) bool {
	if access == nil {
		return true
	}
	res := distauth.Resource{Type: "repository", Name: name}
	records := []distauth.Access{{Resource: res, Action: "pull"}}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		records = append(records, distauth.Access{Resource: res, Action: "push"})
	case http.MethodDelete:
		records = []distauth.Access{{Resource: res, Action: "delete"}}
	}
	if _, err := access.Authorized(r, records...); err != nil {
		var ch distauth.Challenge
		if errors.As(err, &ch) {
			ch.SetHeaders(r, w)
			wire.WriteError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return false
		}
		wire.WriteError(w, http.StatusForbidden, "DENIED", "requested access to the resource is denied")
		return false
	}
	return true
}
