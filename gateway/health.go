package gateway

import (
	"context"
	"encoding/json"
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
	// ReadinessPath answers 200 when ECR answers, 503 when it does not. It
	// reports; it does not stop the proxy from serving its cache.
	ReadinessPath = "/readyz"
)

// ProbeFunc checks that the upstream registry answers.
type ProbeFunc func(ctx context.Context) error

// WithReadinessProbe sets the check behind ReadinessPath; without one the
// endpoint reports ready.
func WithReadinessProbe(p ProbeFunc) Option { return func(h *handler) { h.probe = p } }

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
		status, body := http.StatusOK, map[string]string{"status": "ok", "ecr": "reachable"}
		if h.probe != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
			defer cancel()
			if err := h.probe(ctx); err != nil {
				h.log.WithError(redact.Error(err)).Warn("readiness: ECR unreachable")
				status, body["status"], body["ecr"] = http.StatusServiceUnavailable, "degraded", "unreachable"
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
