// Package redact is the one way a URL reaches a log line, an error or a
// metric label: without its query string (where presigned S3 URLs carry
// X-Amz-Signature, X-Amz-Credential and X-Amz-Security-Token) and
// without user information.
package redact

import (
	"errors"
	"net/url"
	"regexp"
)

// Placeholder replaces what was removed.
const Placeholder = "REDACTED"

// URL returns u as scheme://host/path, its query (if any) replaced by
// Placeholder, its user information and fragment dropped.
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, Opaque: u.Opaque}
	if u.RawQuery != "" || u.ForceQuery {
		c.RawQuery = Placeholder
	}
	return c.String()
}

// String redacts the URL raw; a string that does not parse as a URL is
// redacted as free text (see Text).
func String(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Text(raw)
	}
	return URL(u)
}

var (
	// urlQuery is the query and user information of any URL in a text.
	urlQuery = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://)(?:[^/\s"'@]*@)?([^\s"'?#]*)\?[^\s"'#]*`)
	// amzParam is a signing parameter outside a recognisable URL.
	amzParam = regexp.MustCompile(`(?i)((?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId)=)[^&\s"']*`)
)

// Text removes from free text the query of every URL it contains and
// any presigning parameter left.
func Text(s string) string {
	s = urlQuery.ReplaceAllString(s, "${1}${2}?"+Placeholder)
	return amzParam.ReplaceAllString(s, "${1}"+Placeholder)
}

// Error returns err with every URL in its message redacted; errors.Is
// and errors.As still see err. It returns nil for nil, and err itself
// when its message has nothing to redact.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := Text(msg)
	if red == msg {
		return err
	}
	return &redacted{err: err, msg: red}
}

// redacted is an error whose message was redacted.
type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string { return r.msg }

// Unwrap returns the original error, for errors.Is and errors.As; its
// own message is not redacted.
func (r *redacted) Unwrap() error { return r.err }

// IsPresigned reports whether u carries a query signature (SigV4's
// X-Amz-Signature or X-Amz-Credential, or V2's Signature).
func IsPresigned(u *url.URL) bool {
	if u == nil {
		return false
	}
	q := u.Query()
	return q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential") || q.Has("Signature")
}

// URLError is a *url.Error found in err's chain with its URL redacted,
// or nil if there is none.
func URLError(err error) *url.Error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return nil
	}
	return &url.Error{Op: ue.Op, URL: String(ue.URL), Err: ue.Err}
}
