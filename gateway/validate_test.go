package gateway

import "testing"

func TestCheckPath(t *testing.T) {
	t.Parallel()
	valid := []string{
		"/", "/v2/", "/v2/_catalog", "/healthz",
		"/v2/team/app/manifests/1.2", "/v2/team/app/manifests/sha256:" + hex64,
		"/v2/team/app/blobs/sha256:" + hex64, "/v2/team/app/tags/list",
		"/v2/team/app/blobs/uploads/", "/v2/team/app/blobs/uploads/0f3a-uuid",
		"/v2/a/b/c/d/manifests/latest", "/v2/team/app/referrers/sha256:" + hex64,
	}
	for _, p := range valid {
		if e := checkPath(p); e != nil {
			t.Errorf("checkPath(%q) = %v, want valid", p, e)
		}
	}
	invalid := map[string]string{
		"/v2/Team/app/manifests/1":          "NAME_INVALID",
		"/v2/team/app/blobs/sha256:zz":      "DIGEST_INVALID",
		"/v2/team/app/manifests/.x":         "TAG_INVALID",
		"/v2/team/app/manifests/sha256:abc": "DIGEST_INVALID",
		"/v2/team/app/referrers/nope":       "DIGEST_INVALID",
		"/v2/__/tags/list":                  "NAME_INVALID",
	}
	for p, code := range invalid {
		if e := checkPath(p); e == nil || e.code != code {
			t.Errorf("checkPath(%q) = %v, want %s", p, e, code)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/v2/team/app/manifests/1", "/v2/a/blobs/sha256:" + hex64, "/v2//tags/list", "/v2/x/blobs/uploads/u"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if e := checkPath(p); e != nil && e.code == "" {
			t.Fatalf("checkPath(%q) gave an error without a code", p)
		}
	})
}
