package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/redact"
)

// Upstream tracks whether ECR answered recently. Feed it every upstream
// round trip with Observe; it is safe for concurrent use.
type Upstream struct {
	now func() time.Time

	mu          sync.Mutex
	lastFailure time.Time
	lastSuccess time.Time
	lastCause   string // of the last failure, redacted
	retryAfter  string // of the last 429 answer
}

// NewUpstream returns an Upstream that has seen nothing yet.
func NewUpstream() *Upstream { return &Upstream{now: time.Now} }

// Observe records the outcome of one round trip to the upstream: a
// transport error (other than the caller cancelling) or a 5xx answer is a
// failure, any other answer a success. It also tells the gateway that the
// request behind it fetched content from ECR (see wire.CacheStatusHeader).
func (u *Upstream) Observe(req *http.Request, resp *http.Response, err error) {
	if req != nil {
		noteFetch(req)
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	failed := err != nil || (resp != nil && resp.StatusCode >= http.StatusInternalServerError)
	var cause string
	if failed {
		cause = failureCause(req, resp, err)
		noteCause(req, cause)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
		u.retryAfter = resp.Header.Get("Retry-After")
	}
	if failed {
		u.lastFailure = u.now()
		u.lastCause = cause
	} else {
		u.lastSuccess = u.now()
	}
}

// FailedSince reports whether the upstream failed at or after t and has
// not answered since.
func (u *Upstream) FailedSince(t time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.lastFailure.Before(t) && !u.lastSuccess.After(u.lastFailure)
}

// Cause says why the last failed round trip failed ("" before any).
func (u *Upstream) Cause() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastCause
}

// failureCause describes a failed round trip for the log, without
// secrets: the request, and ECR's status or the transport error.
func failureCause(req *http.Request, resp *http.Response, err error) string {
	what := "ECR"
	if req != nil {
		what = req.Method + " " + redact.URL(req.URL)
	}
	if err != nil {
		return what + ": " + redact.Error(err).Error()
	}
	return fmt.Sprintf("%s: ECR answered %d %s", what, resp.StatusCode, http.StatusText(resp.StatusCode))
}

// Healthy reports whether the last round trip succeeded (true before any).
func (u *Upstream) Healthy() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.lastFailure.After(u.lastSuccess)
}

// RetryAfter is the Retry-After of ECR's last 429 answer, if it had one,
// to pass on to clients that get a 429 because of it.
func (u *Upstream) RetryAfter() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.retryAfter
}
