package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ecr-proxy/ecr-proxy/auth"
)

func TestObserveMint(t *testing.T) {
	t.Parallel()
	r, reg := testRecorder(t, 0)
	expires := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)

	r.observeMint("shared", auth.MintEvent{Token: auth.Token{Username: "AWS", Password: "s3cr3t", ExpiresAt: expires}, Duration: 300 * time.Millisecond})
	r.observeMint("shared", auth.MintEvent{Err: errors.New("get ECR authorization token: AccessDenied"), Duration: 2 * time.Second})

	want := `# HELP ecrproxy_token_expiry_timestamp_seconds Unix time at which the registry's current ECR token expires (0 before the first mint). Remaining lifetime: this minus time().
# TYPE ecrproxy_token_expiry_timestamp_seconds gauge
ecrproxy_token_expiry_timestamp_seconds{registry="shared"} 1.767366e+09
# HELP ecrproxy_token_mints_total ECR authorization token mints (GetAuthorizationToken calls), by registry and result.
# TYPE ecrproxy_token_mints_total counter
ecrproxy_token_mints_total{registry="shared",result="failure"} 1
ecrproxy_token_mints_total{registry="shared",result="success"} 1
`
	got := exposition(t, reg, "ecrproxy_token_mints_total", "ecrproxy_token_expiry_timestamp_seconds")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exposition (-want +got):\n%s", diff)
	}
	if n, _ := value(t, reg, "ecrproxy_token_mint_duration_seconds", "registry", "shared"); n != 2 {
		t.Errorf("mint duration observations = %v, want 2", n)
	}
	if got := exposition(t, reg); strings.Contains(got, "s3cr3t") {
		t.Errorf("exposition contains the token's password:\n%s", got)
	}
}

func TestObserveMintKeepsExpiryOnFailure(t *testing.T) {
	t.Parallel()
	r, reg := testRecorder(t, 0)
	expires := time.Unix(1_800_000_000, 0)
	r.observeMint("shared", auth.MintEvent{Token: auth.Token{ExpiresAt: expires}})
	r.observeMint("shared", auth.MintEvent{Err: errors.New("timeout")})

	got, _ := value(t, reg, "ecrproxy_token_expiry_timestamp_seconds", "registry", "shared")
	if want := float64(expires.Unix()); got != want {
		t.Errorf("expiry after a failed renewal = %v, want the current token's %v", got, want)
	}
}
