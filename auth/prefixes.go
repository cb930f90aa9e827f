package auth

import (
	"fmt"
	"regexp"
	"strings"
)

// prefixPattern is one or more repository path components, as
// distribution's reference grammar has them, joined by slashes.
var prefixPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// CheckPrefixes checks the repository prefixes of several registries:
// each must be one or more repository name components ("shared",
// "team/prod"; lower case, no slash at either end), and none may equal
// another or be a path prefix of another ("team" and "team/prod"), since
// a name would then belong to both registries. The error, wrapping
// ErrBadPrefix or ErrOverlappingPrefixes, names the values.
func CheckPrefixes(prefixes []string) error {
	for _, p := range prefixes {
		if !prefixPattern.MatchString(p) {
			return fmt.Errorf("%w: %q: want repository name components such as \"shared\" or \"team/prod\" (lower case letters, digits, separators . _ -, no slash at either end)", ErrBadPrefix, p)
		}
	}
	for i, a := range prefixes {
		for _, b := range prefixes[i+1:] {
			if a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/") {
				return fmt.Errorf("%w: %q and %q: a repository name would belong to both registries", ErrOverlappingPrefixes, a, b)
			}
		}
	}
	return nil
}
