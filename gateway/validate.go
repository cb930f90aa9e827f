package gateway

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// tagPattern is the distribution spec's tag grammar.
var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// pathError is what is wrong with a registry API path, as the spec's code.
type pathError struct {
	code    string
	message string
}

// checkPath looks at /v2/<name>/(manifests|blobs|tags|referrers)/... and
// reports a malformed repository name, digest or tag. distribution's
// router answers most such paths with a plain-text 404 the clients cannot
// interpret. Paths it does not recognise pass unchanged.
func checkPath(p string) *pathError {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok || rest == "" || rest == "_catalog" {
		return nil
	}
	var name, ref, kind string
	switch {
	case strings.HasSuffix(rest, "/tags/list"):
		name, kind = strings.TrimSuffix(rest, "/tags/list"), "tags"
	case strings.Contains(rest, "/blobs/uploads"):
		name, _, _ = strings.Cut(rest, "/blobs/uploads")
		kind = "uploads"
	case strings.Contains(rest, "/blobs/"):
		i := strings.LastIndex(rest, "/blobs/")
		name, ref, kind = rest[:i], rest[i+len("/blobs/"):], "blobs"
	case strings.Contains(rest, "/manifests/"):
		i := strings.LastIndex(rest, "/manifests/")
		name, ref, kind = rest[:i], rest[i+len("/manifests/"):], "manifests"
	case strings.Contains(rest, "/referrers/"):
		i := strings.LastIndex(rest, "/referrers/")
		name, ref, kind = rest[:i], rest[i+len("/referrers/"):], "referrers"
	default:
		return nil
	}
	if len(name) > reference.RepositoryNameTotalLengthMax {
		return &pathError{"NAME_INVALID", "invalid repository name: longer than 255 characters"}
	}
	if _, err := reference.WithName(name); err != nil || strings.ToLower(name) != name {
		return &pathError{"NAME_INVALID", "invalid repository name"}
	}
	switch kind {
	case "blobs", "referrers":
		if _, err := digest.Parse(ref); err != nil {
			return &pathError{"DIGEST_INVALID", "invalid digest"}
		}
	case "manifests":
		if strings.Contains(ref, ":") {
			if _, err := digest.Parse(ref); err != nil {
				return &pathError{"DIGEST_INVALID", "invalid digest"}
			}
		} else if !tagPattern.MatchString(ref) {
			return &pathError{"TAG_INVALID", "invalid tag"}
		}
	}
	return nil
}

// rejectInvalid answers a malformed registry path with 400 and the
// spec's error code, and reports whether it did.
func rejectInvalid(w http.ResponseWriter, r *http.Request) bool {
	if perr := checkPath(r.URL.Path); perr != nil {
		wire.WriteError(w, http.StatusBadRequest, perr.code, perr.message)
		return true
	}
	return false
}
