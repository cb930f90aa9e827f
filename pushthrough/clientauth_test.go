package pushthrough

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // registers "htpasswd"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
)

func TestAccessRecords(t *testing.T) {
	t.Parallel()
	repo := func(name, action string) distauth.Access {
		return distauth.Access{Resource: distauth.Resource{Type: "repository", Name: name}, Action: action}
	}
	tests := []struct {
		method, target string
		want           []distauth.Access
	}{
		{"POST", "/v2/team/app/blobs/uploads/", []distauth.Access{repo("team/app", "pull"), repo("team/app", "push")}},
		{"POST", "/v2/team/app/blobs/uploads/?mount=sha256:" + zeros + "&from=team/base",
			[]distauth.Access{repo("team/app", "pull"), repo("team/app", "push"), repo("team/base", "pull")}},
		{"PATCH", "/v2/team/app/blobs/uploads/x", []distauth.Access{repo("team/app", "pull"), repo("team/app", "push")}},
		{"PUT", "/v2/team/app/manifests/1", []distauth.Access{repo("team/app", "pull"), repo("team/app", "push")}},
		{"GET", "/v2/team/app/blobs/uploads/x", []distauth.Access{repo("team/app", "pull")}},
		{"DELETE", "/v2/team/app/manifests/1", []distauth.Access{repo("team/app", "delete")}},
	}
	for _, tt := range tests {
		got := accessRecords(httptest.NewRequest(tt.method, tt.target, nil), "team/app")
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", tt.method, tt.target, diff)
		}
	}
}

// recordingController grants or refuses, and records what was asked.
type recordingController struct {
	err error
	mu  sync.Mutex
	got [][]distauth.Access
}

func (c *recordingController) Authorized(_ *http.Request, access ...distauth.Access) (*distauth.Grant, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, access)
	if c.err != nil {
		return nil, c.err
	}
	return &distauth.Grant{User: distauth.UserInfo{Name: "u"}}, nil
}

// TestAuthorizeHtpasswd builds the access controller from an auth:
// htpasswd section, as the command does, and pushes through it.
func TestAuthorizeHtpasswd(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &configuration.Configuration{Auth: configuration.Auth{"htpasswd": {"realm": "ecr-proxy", "path": path}}}
	ac, err := AccessControllerFromConfig(cfg)
	if err != nil || ac == nil {
		t.Fatalf("AccessControllerFromConfig = %v, %v", ac, err)
	}
	ecr := newScripted(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	gw := newGateway(t, ecr.URL, nil, nil, WithAccessController(ac))

	for _, tt := range []struct {
		name       string
		user, pw   string
		wantStatus int
	}{
		{"anonymous", "", "", http.StatusUnauthorized},
		{"wrong password", "alice", "nope", http.StatusUnauthorized},
		{"unknown user", "bob", "s3cret", http.StatusUnauthorized},
		{"alice", "alice", "s3cret", http.StatusAccepted},
	} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, gw.URL+"/v2/team/app/blobs/uploads/", nil)
		req.RequestURI = ""
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: %s, want %d", tt.name, resp.Status, tt.wantStatus)
		}
		if tt.wantStatus == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("Www-Authenticate"), `realm="ecr-proxy"`) {
			t.Errorf("%s: challenge %q", tt.name, resp.Header.Get("Www-Authenticate"))
		}
	}
	if n := len(ecr.requests()); n != 1 {
		t.Errorf("requests at ECR = %d, want 1 (alice's)", n)
	}

	if ac, err := AccessControllerFromConfig(&configuration.Configuration{}); ac != nil || err != nil {
		t.Errorf("no auth section: %v, %v; want nil, nil", ac, err)
	}
	if _, err := AccessControllerFromConfig(&configuration.Configuration{Auth: configuration.Auth{"nosuch": {}}}); err == nil {
		t.Error("unknown auth type accepted")
	}
}

// TestAuthorizeRefusal: a refusal that is not a challenge is 403 DENIED,
// and nothing reaches ECR; the access asked is distribution's.
func TestAuthorizeRefusal(t *testing.T) {
	t.Parallel()
	ecr := newScripted(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	ac := &recordingController{err: errors.New("htpasswd file unreadable")}
	gw := newGateway(t, ecr.URL, nil, nil, WithAccessController(ac))
	resp, body := do(t, "DELETE", gw.URL+"/v2/team/app/manifests/sha256:"+zeros, nil, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "DENIED") || strings.Contains(body, "htpasswd") {
		t.Errorf("refusal: %s %s, want 403 DENIED revealing nothing", resp.Status, body)
	}
	if len(ecr.requests()) != 0 {
		t.Error("a refused write reached ECR")
	}
	want := [][]distauth.Access{{{Resource: distauth.Resource{Type: "repository", Name: "team/app"}, Action: "delete"}}}
	if diff := cmp.Diff(want, ac.got); diff != "" {
		t.Errorf("access asked (-want +got):\n%s", diff)
	}
}
