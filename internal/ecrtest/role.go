package ecrtest

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// WithAssumedRoleOnly makes the registry reachable only through the role
// roleARN ("arn:aws:iam::<account>:role/<name>"), as a registry of
// another account is: GetAuthorizationToken is denied to every identity
// but a session of that role, and STS' AssumeRole of it requires
// externalID (the role's trust policy condition sts:ExternalId).
func WithAssumedRoleOnly(roleARN, externalID string) Option {
	return func(c *config) { c.roleOnly, c.roleExternalID = roleARN, externalID }
}

// RoleARN is the role WithAssumedRoleOnly set ("" without it).
func (e *Emulator) RoleARN() string { return e.cfg.roleOnly }

// trustsAssumeRole checks AssumeRole's ExternalId against the role's
// trust policy (WithAssumedRoleOnly); on failure it writes STS' error.
func (e *Emulator) trustsAssumeRole(w http.ResponseWriter, form url.Values, caller identity) bool {
	if e.cfg.roleOnly == "" || form.Get("RoleArn") != e.cfg.roleOnly || form.Get("ExternalId") == e.cfg.roleExternalID {
		return true
	}
	writeSTSError(w, http.StatusForbidden, "Sender", "AccessDenied",
		fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller.arn, e.cfg.roleOnly))
	return false
}

// mayMint reports whether id may call GetAuthorizationToken: with
// WithAssumedRoleOnly, only sessions of that role may.
func (e *Emulator) mayMint(id identity) bool {
	if e.cfg.roleOnly == "" {
		return true
	}
	m := roleARNPattern.FindStringSubmatch(e.cfg.roleOnly)
	if m == nil {
		return false
	}
	return strings.HasPrefix(id.arn, fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/", m[1], m[2]))
}
