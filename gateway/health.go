package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/redact"
)

// Paths of the health endpoints the gateway answers itself, ahead of
// distribution's health checks (which, when failing, turn every request
// into a 503).
const (
	// LivenessPath answers 200 while the process serves HTTP, as the seed
	// proxy's /healthz did.
	LivenessPath = "/healthz"
	// ReadinessPath answers 200 when ECR answers and the proxy holds a
	// token for it, 503 when not. It reports; it does not stop the proxy
	// from serving its cache.
	ReadinessPath = "/readyz"
)

// ProbeFunc checks that the upstream registry answers, and that the
// proxy has credentials for it: an error wrapping ErrNoCredentials says it
// answers but every request needing a token fails.
type ProbeFunc func(ctx context.Context) error

// ErrNoCredentials marks a probe error of a registry the proxy holds no
// valid token for, its last mint having failed (its role refused, the
// mint denied): ReadinessPath reports it as "no credentials", not
// ready, rather than "unreachable".
var ErrNoCredentials = errors.New("no valid ECR token, the last mint failed")

// WithReadinessProbe sets the check behind ReadinessPath; without one the
// endpoint reports ready.
func WithReadinessProbe(p ProbeFunc) Option { return func(h *handler) { h.probe = p } }

// componentCheck is a part the proxy serves without, less well.
type componentCheck struct {
	name  string
	check func() error
}

// WithDegradedCheck adds a part the proxy can serve without (such as the
// shared cache's Redis) to ReadinessPath: while check fails, the answer
// says "<name>": "degraded" and "status": "degraded", and stays 200.
// check must not block; it reports state the part keeps itself. A nil
// check adds nothing.
func WithDegradedCheck(name string, check func() error) Option {
	return func(h *handler) {
		if check != nil {
			h.degraded = append(h.degraded, componentCheck{name: name, check: check})
		}
	}
}

// RegistriesProbeFunc checks several upstream registries at once and
// returns each one's outcome by name: nil when it answers.
type RegistriesProbeFunc func(ctx context.Context) map[string]error

// WithRegistriesProbe sets the check behind ReadinessPath for several
// registries, in place of WithReadinessProbe: the answer has one entry
// per registry under "registries" ("reachable", "unreachable", or "no
// credentials" for an error wrapping ErrNoCredentials). Some not ready is
// status "degraded" with 200, since the others' prefixes and the cache
// are served; none ready is 503, as for one registry.
func WithRegistriesProbe(p RegistriesProbeFunc) Option {
	return func(h *handler) { h.registriesProbe = p }
}

// readinessTimeout bounds one probe of the upstream; uploadsReadyTimeout
// how long the upload sessions may stay locked before the upload path
// counts as wedged (their lock is never held across I/O).
const (
	readinessTimeout    = 5 * time.Second
	uploadsReadyTimeout = time.Second
)

func (h *handler) serveHealth(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case LivenessPath:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case ReadinessPath:
		status, body := http.StatusOK, map[string]any{"status": "ok", "ecr": "reachable"}
		if h.registriesProbe != nil {
			status = h.probeRegistries(r.Context(), body)
		}
		if h.probe != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
			defer cancel()
			if err := h.probe(ctx); err != nil {
				state := registryState(err)
				h.log.WithError(redact.Error(err)).Warn("readiness: ECR " + state)
				status, body["status"], body["ecr"] = http.StatusServiceUnavailable, "degraded", state
			}
		}
		for _, c := range h.degraded {
			body[c.name] = "ok"
			if c.check() != nil {
				body[c.name] = "degraded"
				if status == http.StatusOK {
					body["status"] = "degraded"
				}
			}
		}
		if h.push != nil {
			body["uploads"] = "ok"
			ctx, cancel := context.WithTimeout(r.Context(), uploadsReadyTimeout)
			defer cancel()
			if err := h.push.Ready(ctx); err != nil {
				h.log.WithError(err).Error("readiness: the upload path is wedged")
				status, body["status"], body["uploads"] = http.StatusServiceUnavailable, "failing", "wedged"
			}
		}
		writeJSON(w, status, body)
	default:
		return false
	}
	return true
}

// probeRegistries fills body's registries entry and its status and ecr
// entries from the registries probe, and returns the status code.
func (h *handler) probeRegistries(ctx context.Context, body map[string]any) int {
	ctx, cancel := context.WithTimeout(ctx, readinessTimeout)
	defer cancel()
	results := h.registriesProbe(ctx)
	entries := make(map[string]string, len(results))
	down, noCredentials := 0, 0
	for name, err := range results {
		entries[name] = registryState(err)
		if err != nil {
			down++
			if errors.Is(err, ErrNoCredentials) {
				noCredentials++
			}
			h.log.WithError(redact.Error(err)).WithField("registry", name).Warn("readiness: ECR registry " + entries[name])
		}
	}
	body["registries"] = entries
	switch {
	case down == 0:
		return http.StatusOK
	case down < len(results):
		body["status"], body["ecr"] = "degraded", "partly reachable"
		return http.StatusOK
	case noCredentials == down:
		body["status"], body["ecr"] = "degraded", "no credentials"
		return http.StatusServiceUnavailable
	default:
		body["status"], body["ecr"] = "degraded", "unreachable"
		return http.StatusServiceUnavailable
	}
}

// registryState is the readiness entry of a registry whose probe
// returned err.
func registryState(err error) string {
	switch {
	case err == nil:
		return "reachable"
	case errors.Is(err, ErrNoCredentials):
		return "no credentials"
	default:
		return "unreachable"
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
