package main

import (
	"fmt"
	"net/http"

	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/gateway"
)

// newPushPassthrough builds the gateway's push passthrough: writes go to
// ECR through rt, checked against the auth: section; what passes is also
// written into the local cache by writeThrough.
func newPushPassthrough(s *settings, rt http.RoundTripper, writeThrough *gateway.WriteThrough, clientAuth distauth.AccessController) (*gateway.Passthrough, error) {
	if clientAuth == nil {
		s.notes = append(s.notes, "no auth: section: anyone who reaches the proxy can push to ECR with its AWS identity")
	}
	trusted, err := gateway.ParseTrustedProxies(s.ecr.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("ecr.trustedproxies: %w", err)
	}
	external, err := gateway.ExternalURLFromConfig(s.dist, trusted)
	if err != nil {
		return nil, err
	}
	return gateway.NewPassthrough(s.dist.Proxy.RemoteURL, rt,
		gateway.WithExternalURL(external),
		gateway.WithPathPrefix(s.dist.HTTP.Prefix),
		gateway.WithAccessController(clientAuth),
		gateway.WithWriteThrough(writeThrough),
		gateway.WithPushLogger(logrus.StandardLogger().WithField("component", "push")))
}
