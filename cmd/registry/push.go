package main

import (
	"fmt"
	"net/http"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/pushthrough"
)

// newPushPassthrough builds the gateway's push passthrough: writes go to
// ECR through rt, checked against the auth: section; what passes is also
// written into the local cache by writeThrough.
func newPushPassthrough(s *settings, rt http.RoundTripper, writeThrough *pushthrough.WriteThrough, clientAuth distauth.AccessController) (*pushthrough.Passthrough, error) {
	if s.push == pushDisabled {
		return nil, nil //nolint:nilnil // no passthrough: distribution refuses writes (405)
	}
	if clientAuth == nil && !s.envOnly {
		s.notes = append(s.notes, "ecr.push: anonymous: anyone who reaches the proxy can push to ECR with its AWS identity")
	}
	trusted, err := pushthrough.ParseTrustedProxies(s.ecr.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("ecr.trustedproxies: %w", err)
	}
	external, err := pushthrough.ExternalURLFromConfig(s.dist, trusted)
	if err != nil {
		return nil, err
	}
	return pushthrough.NewPassthrough(s.dist.Proxy.RemoteURL, rt,
		pushthrough.WithExternalURL(external),
		pushthrough.WithPathPrefix(s.dist.HTTP.Prefix),
		pushthrough.WithAccessController(clientAuth),
		pushthrough.WithWriteThrough(writeThrough),
		pushthrough.WithPushLogger(logrus.StandardLogger().WithField("component", "push")))
}

// refuseDeletes answers DELETE of manifests and blobs with 405 UNSUPPORTED,
// as distribution does when deletes are disabled, so that they never
// reach ECR; everything else (upload cancels included) goes to next.
func refuseDeletes(next http.Handler, prefix string) http.Handler {
	router := v2.RouterWithPrefix(prefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m mux.RouteMatch
		if r.Method == http.MethodDelete && router.Match(r, &m) && m.Route != nil {
			if n := m.Route.GetName(); n == v2.RouteNameManifest || n == v2.RouteNameBlob {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusMethodNotAllowed)
				_, _ = fmt.Fprintf(w, `{"errors":[{"code":"UNSUPPORTED","message":%q}]}`+"\n",
					"DELETE is not forwarded to ECR: set ecr.delete: enabled ("+envECRDelete+"=enabled) to allow it")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
