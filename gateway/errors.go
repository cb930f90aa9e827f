package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// registryError is one entry of the distribution-spec error body.
type registryError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError writes {"errors":[{"code","message"}]} with status.
func writeError(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(struct {
		Errors []registryError `json:"errors"`
	}{[]registryError{{code, message}}})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// msgManifestRefused answers a read whose upstream manifest
// GuardManifests refused.
const msgManifestRefused = "the upstream registry sent a manifest larger than 4 MiB, or not matching its digest: it was neither served nor cached"

const msgUpstreamUnavailable = "the upstream registry is unavailable and this content is not cached; retry later"
