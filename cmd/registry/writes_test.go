package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestWritesSafeByDefault: with a file, push without auth: is refused at
// start unless ecr.push says so; DELETE is off unless ecr.delete enables
// it; the seed's environment-only mode keeps anonymous push, with a
// warning naming the setting that closes it.
func TestWritesSafeByDefault(t *testing.T) {
	clearRegionEnv(t)
	noPush := strings.Replace(validBase, "ecr:\n  push: anonymous\n", "", 1)
	_, err := loadSettings(writeFile(t, noPush), os.LookupEnv)
	if err == nil || !strings.Contains(err.Error(), "ecr.push") || !strings.Contains(err.Error(), "auth:") {
		t.Errorf("no auth:, no ecr.push: %v, want a refusal naming ecr.push and auth:", err)
	}
	for _, tt := range []struct {
		yaml       string
		push       string
		deleteOn   bool
		wantErrHas string
	}{
		{validBase, pushAnonymous, false, ""},
		{noPush + "ecr:\n  push: disabled\n", pushDisabled, false, ""},
		{withECR("  delete: enabled\n"), pushAnonymous, true, ""},
		{noPush + "auth:\n  htpasswd:\n    realm: r\n    path: /x\n", pushAuthenticated, false, ""},
		{noPush + "ecr:\n  push: yes\n", "", false, `ecr.push "yes"`},
		{withECR("  delete: true\n"), "", false, `ecr.delete "true"`},
	} {
		s, err := loadSettings(writeFile(t, tt.yaml), os.LookupEnv)
		if tt.wantErrHas != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErrHas) {
				t.Errorf("%q: %v, want an error with %q", tt.yaml, err, tt.wantErrHas)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.yaml, err)
			continue
		}
		if s.push != tt.push || s.deleteEnabled != tt.deleteOn {
			t.Errorf("%q: push %q delete %v, want %q %v", tt.yaml, s.push, s.deleteEnabled, tt.push, tt.deleteOn)
		}
	}

	seed := []string{"ECR", "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com", "PORT", "5000"}
	s, err := loadSettings("", envMap(seed...))
	if err != nil {
		t.Fatal(err)
	}
	if s.push != pushAnonymous || s.deleteEnabled || len(s.warnings) != 1 ||
		!strings.Contains(s.warnings[0], "WARNING") || !strings.Contains(s.warnings[0], "ECR_PUSH=disabled") {
		t.Errorf("seed mode: push %q delete %v warnings %q; want anonymous with a WARNING naming ECR_PUSH=disabled",
			s.push, s.deleteEnabled, s.warnings)
	}
	s, err = loadSettings("", envMap(append(seed, "ECR_PUSH", "disabled", "ECR_DELETE", "enabled")...))
	if err != nil {
		t.Fatal(err)
	}
	if s.push != pushDisabled || !s.deleteEnabled || len(s.warnings) != 0 {
		t.Errorf("ECR_PUSH=disabled ECR_DELETE=enabled: push %q delete %v warnings %q", s.push, s.deleteEnabled, s.warnings)
	}
}

// TestRefuseDeletes: DELETE of manifests and blobs is answered 405 without
// reaching the next handler; upload cancels and other methods pass.
func TestRefuseDeletes(t *testing.T) {
	reached := false
	h := refuseDeletes(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }), "")
	for _, tt := range []struct {
		method, path string
		refused      bool
	}{
		{http.MethodDelete, "/v2/team/app/manifests/1", true},
		{http.MethodDelete, "/v2/team/app/manifests/sha256:" + strings.Repeat("a", 64), true},
		{http.MethodDelete, "/v2/team/app/blobs/sha256:" + strings.Repeat("a", 64), true},
		{http.MethodDelete, "/v2/team/app/blobs/uploads/0123-abcd", false},
		{http.MethodGet, "/v2/team/app/manifests/1", false},
		{http.MethodPut, "/v2/team/app/manifests/1", false},
	} {
		reached = false
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if tt.refused != (rec.Code == http.StatusMethodNotAllowed) || tt.refused == reached {
			t.Errorf("%s %s: %d, reached %v; want refused %v", tt.method, tt.path, rec.Code, reached, tt.refused)
		}
		if tt.refused && !strings.Contains(rec.Body.String(), "ecr.delete") {
			t.Errorf("%s %s: body %q does not name ecr.delete", tt.method, tt.path, rec.Body)
		}
	}
}
