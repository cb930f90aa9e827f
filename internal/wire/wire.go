// Package wire holds the names and limits of the registry protocol, its
// error body, and the URL helper, that several of ecr-proxy's packages
// share: one copy of each.
package wire

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const (
	// CacheStatusHeader is the seed proxy's response header saying where a
	// blob or manifest came from: HIT (the cache), MISS (ECR) or STALE
	// (the cache, ECR unavailable).
	CacheStatusHeader = "X-Cache-Status"
	// CacheHit is CacheStatusHeader's value for an answer from the cache.
	CacheHit = "HIT"
	// CacheMiss is CacheStatusHeader's value for an answer from ECR.
	CacheMiss = "MISS"
	// CacheStale is CacheStatusHeader's value for an answer from the cache
	// that ECR, unavailable, did not confirm (nginx's word).
	CacheStale = "STALE"
	// OctetStream is the media type of a blob served or stored without one.
	OctetStream = "application/octet-stream"
)

// CanonicalHost is u's host:port, lower case, with the scheme's default
// port made explicit, to compare hosts however they are written.
func CanonicalHost(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

// MaxManifestSize is the largest manifest taken from upstream or pushed
// (a pushed one is read whole, to be replayed and cached): ECR's limit,
// and distribution's.
const MaxManifestSize = 4 << 20

// registryError is one entry of the distribution-spec error body.
type registryError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError answers the distribution-spec error body
// {"errors":[{"code","message"}]} with status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
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
