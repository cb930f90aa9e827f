package ecrtest

import (
	"net/http"
	"regexp"
)

// route is a classified registry request.
type route struct {
	kind Kind
	name string // repository name
	ref  string // tag, digest or upload UUID
}

var (
	uploadPath    = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/?([^/]*)$`)
	blobPath      = regexp.MustCompile(`^/v2/(.+)/blobs/([^/]+)$`)
	manifestPath  = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
	tagsPath      = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
	referrersPath = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)
)

// classify maps a registry request to its Kind and path parameters.
func classify(method, path string) route {
	switch path {
	case "/v2/", "/v2":
		return route{kind: KindPing}
	case "/v2/_catalog":
		return route{kind: KindCatalog}
	}
	if m := uploadPath.FindStringSubmatch(path); m != nil {
		return route{kind: KindUpload, name: m[1], ref: m[2]}
	}
	if m := blobPath.FindStringSubmatch(path); m != nil {
		return route{kind: byMethod(method, KindBlobHEAD, KindBlobGET, "", KindBlobDELETE), name: m[1], ref: m[2]}
	}
	if m := manifestPath.FindStringSubmatch(path); m != nil {
		return route{kind: byMethod(method, KindManifestHEAD, KindManifestGET, KindManifestPUT, KindManifestDELETE), name: m[1], ref: m[2]}
	}
	if m := tagsPath.FindStringSubmatch(path); m != nil {
		return route{kind: KindTagsList, name: m[1]}
	}
	if m := referrersPath.FindStringSubmatch(path); m != nil {
		return route{kind: KindReferrers, name: m[1], ref: m[2]}
	}
	return route{kind: KindRegistryOther}
}

func byMethod(method string, head, get, put, del Kind) Kind {
	var k Kind
	switch method {
	case http.MethodHead:
		k = head
	case http.MethodGet:
		k = get
	case http.MethodPut:
		k = put
	case http.MethodDelete:
		k = del
	}
	if k == "" {
		return KindRegistryOther
	}
	return k
}
