package pushthrough

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/distribution/distribution/v3/configuration"
	distauth "github.com/distribution/distribution/v3/registry/auth"

	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// AccessControllerFromConfig builds the access controller distribution's
// app builds from the auth: section, or returns nil when the section is
// empty (no client authentication: anyone who reaches the proxy may push
// with the proxy's AWS identity). The controller's package must be
// registered (blank-imported), as for distribution itself.
func AccessControllerFromConfig(cfg *configuration.Configuration) (distauth.AccessController, error) {
	typ := cfg.Auth.Type()
	if typ == "" {
		return nil, nil
	}
	ac, err := distauth.GetAccessController(typ, cfg.Auth.Parameters())
	if err != nil {
		return nil, fmt.Errorf("auth.%s: %w", typ, err)
	}
	return ac, nil
}

// accessRecords is what a write needs, exactly as distribution's app asks
// it (handlers.appendAccessRecords): pull and push on the repository for
// POST, PUT and PATCH, delete for DELETE, pull for GET (upload status);
// and pull on the source repository of a cross-repository mount.
func accessRecords(r *http.Request, repo string) []distauth.Access {
	res := distauth.Resource{Type: "repository", Name: repo}
	var out []distauth.Access
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		out = append(out, distauth.Access{Resource: res, Action: "pull"})
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		out = append(out, distauth.Access{Resource: res, Action: "pull"}, distauth.Access{Resource: res, Action: "push"})
	case http.MethodDelete:
		out = append(out, distauth.Access{Resource: res, Action: "delete"})
	}
	if from := r.URL.Query().Get("from"); from != "" && r.Method == http.MethodPost {
		out = append(out, distauth.Access{Resource: distauth.Resource{Type: "repository", Name: from}, Action: "pull"})
	}
	return out
}

// authorize asks the access controller whether r may do its write on repo
// and, when not, answers the client as distribution does: 401
// UNAUTHORIZED with the controller's challenge, or 403 DENIED for any
// other refusal. It reports whether the request may proceed.
func (p *Passthrough) authorize(w http.ResponseWriter, r *http.Request, repo string) bool {
	if p.access == nil {
		return true
	}
	if _, err := p.access.Authorized(r, accessRecords(r, repo)...); err != nil {
		var ch distauth.Challenge
		if errors.As(err, &ch) {
			ch.SetHeaders(r, w)
			wire.WriteError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return false
		}
		p.log.WithError(err).WithField("repository", repo).Warn("push refused: access check failed")
		wire.WriteError(w, http.StatusForbidden, "DENIED", "requested access to the resource is denied")
		return false
	}
	return true
}
