package pullthrough

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

var (
	// ErrNoLocalStore is returned when the repository middleware runs
	// before the registry middleware captured the local namespace.
	ErrNoLocalStore = errors.New("pullthrough: local namespace not captured; is the registry middleware configured?")

	errTruncated = errors.New("upstream body ended before its announced length")
	errDigest    = errors.New("upstream body does not match its digest")
	errStalled   = errors.New("upstream download abandoned")
	// errLeftBehind ends the response of a client that an uncached
	// download could no longer serve: its bytes had left the window.
	errLeftBehind = errors.New("client fell behind an uncached download")
	// errNoClient abandons an uncached download that nobody reads.
	errNoClient = errors.New("uncached download abandoned: no client is reading it")
)

// upstreamStatusError is a non-success answer of ECR.
type upstreamStatusError struct {
	status int
}

func (e *upstreamStatusError) Error() string {
	return fmt.Sprintf("upstream answered %d %s", e.status, http.StatusText(e.status))
}

// storageError turns a failure of the cache's storage driver (an S3
// bucket out of reach) into an honest 503 that names the cache storage,
// logging the detail: distribution would answer 500 with the driver's
// error, URLs and addresses included. Other errors pass unchanged.
func (p *Puller) storageError(err error) error {
	var se storagedriver.Error
	if !errors.As(err, &se) {
		return err
	}
	p.log.WithError(err).Warn("the cache storage is unavailable")
	return errcode.ErrorCodeUnavailable.WithMessage("the cache storage is unavailable; retry later")
}

// clientError turns an upstream failure into the registry error the
// client gets: never an internal address, URL or dial error.
func clientError(err error, dgst digest.Digest) error {
	var se *upstreamStatusError
	if errors.As(err, &se) {
		switch se.status {
		case http.StatusNotFound:
			return errcode.ErrorCodeBlobUnknown.WithDetail(dgst)
		case http.StatusTooManyRequests:
			return errcode.ErrorCodeTooManyRequests.WithMessage("the upstream registry is rate limiting; retry later")
		case http.StatusUnauthorized, http.StatusForbidden:
			return errcode.ErrorCodeDenied.WithMessage("the upstream registry refused the proxy's credentials for this content")
		}
	}
	return errcode.ErrorCodeUnavailable.WithMessage("the upstream registry is unavailable and this content is not cached; retry later")
}
