package ecrtest_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestCredentialSources drives the real SDK credential chain, ECR and STS
// clients against the emulator for every offline credential source, and
// uses the minted token on the registry.
func TestCredentialSources(t *testing.T) {
	e := ecrtest.New(t)
	acct := e.AccountID()
	tests := []struct {
		name       string
		setup      func(t *testing.T, home string)
		wantARN    string
		fetchKind  ecrtest.Kind // credential fetches, expected exactly once
		wantSource string
	}{{
		name: "env keys",
		setup: func(t *testing.T, _ string) {
			t.Setenv("AWS_ACCESS_KEY_ID", ecrtest.AccessKeyID)
			t.Setenv("AWS_SECRET_ACCESS_KEY", ecrtest.SecretAccessKey)
		},
		wantARN:    "arn:aws:iam::" + acct + ":user/emulator",
		wantSource: "EnvConfigCredentials",
	}, {
		name: "shared credentials profile",
		setup: func(t *testing.T, home string) {
			f := filepath.Join(home, "aws-credentials")
			content := "[ecrtest]\naws_access_key_id = " + ecrtest.AccessKeyID + "\naws_secret_access_key = " + ecrtest.SecretAccessKey + "\n"
			if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_PROFILE", "ecrtest")
		},
		wantARN:    "arn:aws:iam::" + acct + ":user/emulator",
		wantSource: "SharedConfigCredentials",
	}, {
		name: "web identity",
		setup: func(t *testing.T, home string) {
			f := filepath.Join(home, "token")
			if err := os.WriteFile(f, []byte("eyJ.fake.jwt"), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", f)
			t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::"+acct+":role/proxy-role")
			t.Setenv("AWS_ROLE_SESSION_NAME", "proxy-test")
		},
		wantARN:    "arn:aws:sts::" + acct + ":assumed-role/proxy-role/proxy-test",
		fetchKind:  ecrtest.KindWebIdentity,
		wantSource: "WebIdentityCredentials",
	}, {
		name: "IMDSv2",
		setup: func(t *testing.T, _ string) {
			t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", e.IMDSURL())
		},
		wantARN:    "arn:aws:sts::" + acct + ":assumed-role/" + ecrtest.IMDSRoleName + "/" + ecrtest.IMDSInstanceID,
		fetchKind:  ecrtest.KindIMDSCredentials,
		wantSource: "EC2RoleProvider",
	}, {
		name: "container credentials",
		setup: func(t *testing.T, _ string) {
			t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", e.ContainerCredentialsURL())
			t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", e.ContainerAuthToken())
		},
		wantARN:    "arn:aws:sts::" + acct + ":assumed-role/ecrtest-task-role/ecrtest",
		fetchKind:  ecrtest.KindContainerCreds,
		wantSource: "CredentialsEndpointProvider",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := ecrtest.ClearAWSEnv(t)
			t.Setenv("AWS_REGION", e.Region())
			t.Setenv("AWS_ENDPOINT_URL_ECR", e.APIURL())
			t.Setenv("AWS_ENDPOINT_URL_STS", e.APIURL())
			tc.setup(t, home)
			e.ResetCounts()

			ctx := t.Context()
			cfg, err := config.LoadDefaultConfig(ctx)
			if err != nil {
				t.Fatalf("LoadDefaultConfig: %v", err)
			}
			creds, err := cfg.Credentials.Retrieve(ctx)
			if err != nil {
				t.Fatalf("retrieving credentials: %v", err)
			}
			if !strings.HasPrefix(creds.Source, tc.wantSource) {
				t.Errorf("credentials source = %q, want %q", creds.Source, tc.wantSource)
			}
			if tc.fetchKind != "" && (!strings.HasPrefix(creds.AccessKeyID, "ASIA") || creds.SessionToken == "") {
				t.Errorf("want temporary credentials, got key %q", creds.AccessKeyID)
			}

			id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			if err != nil {
				t.Fatalf("GetCallerIdentity: %v", err)
			}
			if got := aws.ToString(id.Arn); got != tc.wantARN {
				t.Errorf("caller ARN = %q, want %q", got, tc.wantARN)
			}
			if got := aws.ToString(id.Account); got != acct {
				t.Errorf("account = %q, want %q", got, acct)
			}

			client := ecr.NewFromConfig(cfg)
			var token string
			for range 2 {
				out, err := client.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
				if err != nil {
					t.Fatalf("GetAuthorizationToken: %v", err)
				}
				if len(out.AuthorizationData) != 1 {
					t.Fatalf("got %d authorization data, want 1", len(out.AuthorizationData))
				}
				ad := out.AuthorizationData[0]
				token = aws.ToString(ad.AuthorizationToken)
				if got := aws.ToString(ad.ProxyEndpoint); got != e.RegistryURL() {
					t.Errorf("proxyEndpoint = %q, want %q", got, e.RegistryURL())
				}
				if until := time.Until(aws.ToTime(ad.ExpiresAt)); until < 11*time.Hour || until > 13*time.Hour {
					t.Errorf("expiresAt in %v, want about 12h", until)
				}
			}
			raw, err := base64.StdEncoding.DecodeString(token)
			if err != nil {
				t.Fatalf("decoding token: %v", err)
			}
			user, pw, _ := strings.Cut(string(raw), ":")
			if user != "AWS" || len(pw) < 2000 {
				t.Errorf("token user %q, password of %d chars; want AWS and > 2000", user, len(pw))
			}
			if r := do(t, http.MethodGet, e.RegistryURL()+"/v2/", "Basic "+token, nil); r.status != http.StatusOK {
				t.Errorf("GET /v2/ with minted token: %d %s", r.status, r.body)
			}
			if got := e.Count(ecrtest.KindTokenMint); got != 2 {
				t.Errorf("token mints = %d, want 2", got)
			}
			if got := e.Count(ecrtest.KindCallerIdentity); got != 1 {
				t.Errorf("GetCallerIdentity calls = %d, want 1", got)
			}
			if tc.fetchKind != "" {
				if got := e.Count(tc.fetchKind); got != 1 {
					t.Errorf("%s = %d, want 1 (credentials cached)", tc.fetchKind, got)
				}
			}
		})
	}
}

// TestECRAPIErrors checks signature, scope and injected faults with the
// real ECR client, one attempt per call.
func TestECRAPIErrors(t *testing.T) {
	e := ecrtest.New(t)
	tests := []struct {
		name     string
		key      string
		secret   string
		region   string
		fault    func()
		wantCode string
	}{
		{name: "unknown access key", key: "AKIDUNKNOWN", secret: ecrtest.SecretAccessKey, region: e.Region(), wantCode: "UnrecognizedClientException"},
		{name: "wrong secret", key: ecrtest.AccessKeyID, secret: "wrong", region: e.Region(), wantCode: "InvalidSignatureException"},
		{name: "wrong region", key: ecrtest.AccessKeyID, secret: ecrtest.SecretAccessKey, region: "us-east-1", wantCode: "InvalidSignatureException"},
		{name: "throttled", key: ecrtest.AccessKeyID, secret: ecrtest.SecretAccessKey, region: e.Region(), fault: func() { e.ThrottleMints(1) }, wantCode: "ThrottlingException"},
		{name: "denied", key: ecrtest.AccessKeyID, secret: ecrtest.SecretAccessKey, region: e.Region(), fault: func() { e.DenyMints(1) }, wantCode: "AccessDeniedException"},
		{name: "ok after faults", key: ecrtest.AccessKeyID, secret: ecrtest.SecretAccessKey, region: e.Region()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ecrtest.ClearAWSEnv(t)
			t.Setenv("AWS_ACCESS_KEY_ID", tc.key)
			t.Setenv("AWS_SECRET_ACCESS_KEY", tc.secret)
			t.Setenv("AWS_REGION", tc.region)
			t.Setenv("AWS_ENDPOINT_URL_ECR", e.APIURL())
			t.Setenv("AWS_MAX_ATTEMPTS", "1")
			if tc.fault != nil {
				tc.fault()
			}
			cfg, err := config.LoadDefaultConfig(t.Context())
			if err != nil {
				t.Fatalf("LoadDefaultConfig: %v", err)
			}
			_, err = ecr.NewFromConfig(cfg).GetAuthorizationToken(t.Context(), &ecr.GetAuthorizationTokenInput{})
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("GetAuthorizationToken: %v", err)
				}
				return
			}
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error = %v, want API error %s", err, tc.wantCode)
			}
			if apiErr.ErrorCode() != tc.wantCode {
				t.Errorf("error code = %q (%v), want %q", apiErr.ErrorCode(), err, tc.wantCode)
			}
		})
	}
}

// TestThrottleRetried checks that the SDK's default retryer rides over a
// throttled mint, and that both attempts are counted.
func TestThrottleRetried(t *testing.T) {
	e := ecrtest.New(t)
	ecrtest.ClearAWSEnv(t)
	for _, kv := range e.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	e.ThrottleMints(1)
	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ecr.NewFromConfig(cfg).GetAuthorizationToken(t.Context(), &ecr.GetAuthorizationTokenInput{}); err != nil {
		t.Fatalf("GetAuthorizationToken: %v", err)
	}
	if got := e.Count(ecrtest.KindTokenMint); got != 2 {
		t.Errorf("mint calls = %d, want 2", got)
	}
}
