package ecrtest_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestAPIFrontServesTwoRegistriesOneThroughARole drives the real SDK
// through one ECR and STS endpoint to two emulators: one in eu-west-1
// reached with the static key, one of another account in us-east-1
// reached only through an assumed role with an external ID.
func TestAPIFrontServesTwoRegistriesOneThroughARole(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	a := ecrtest.New(t)
	roleARN := "arn:aws:iam::210987654321:role/ecr-proxy-pull"
	b := ecrtest.New(t, ecrtest.WithRegion("us-east-1"), ecrtest.WithAccountID("210987654321"),
		ecrtest.WithAssumedRoleOnly(roleARN, "ext-7"))
	front := ecrtest.NewAPIFront(t, a, b)
	t.Setenv("AWS_ACCESS_KEY_ID", ecrtest.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ecrtest.SecretAccessKey)
	t.Setenv("AWS_ENDPOINT_URL_ECR", front.URL())
	t.Setenv("AWS_ENDPOINT_URL_STS", front.URL())
	ctx := context.Background()
	load := func(region string) aws.Config {
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	mint := func(cfg aws.Config) (string, error) {
		out, err := ecr.NewFromConfig(cfg).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.AuthorizationData[0].ProxyEndpoint), nil
	}

	// Registry a, with the static key, in its region.
	if endpoint, err := mint(load(a.Region())); err != nil || endpoint != a.RegistryURL() {
		t.Fatalf("mint in %s: %q, %v; want a's registry %s", a.Region(), endpoint, err, a.RegistryURL())
	}
	// Registry b refuses the static key.
	base := load(b.Region())
	if _, err := mint(base); !isAPIError(err, "AccessDeniedException") {
		t.Fatalf("mint in %s with the static key: %v; want AccessDeniedException", b.Region(), err)
	}
	// The role without the external ID is refused.
	noExt := base.Copy()
	noExt.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base), roleARN))
	if _, err := mint(noExt); !isAPIError(err, "AccessDenied") {
		t.Fatalf("mint through the role without its external ID: %v; want AccessDenied", err)
	}
	// With it: b's token, and b says who the caller is.
	role := base.Copy()
	role.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base), roleARN,
		func(o *stscreds.AssumeRoleOptions) { o.ExternalID = aws.String("ext-7") }))
	if endpoint, err := mint(role); err != nil || endpoint != b.RegistryURL() {
		t.Fatalf("mint through the role: %q, %v; want b's registry %s", endpoint, err, b.RegistryURL())
	}
	who, err := sts.NewFromConfig(role).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || !strings.HasPrefix(aws.ToString(who.Arn), "arn:aws:sts::210987654321:assumed-role/ecr-proxy-pull/") {
		t.Fatalf("caller identity through the role: %v, %v", who, err)
	}
	if a.Count(ecrtest.KindTokenMint) != 1 || b.Count(ecrtest.KindTokenMint) != 2 {
		t.Errorf("mints: a %d, b %d; want 1 and 2 (the refused AssumeRole mints nothing)", a.Count(ecrtest.KindTokenMint), b.Count(ecrtest.KindTokenMint))
	}
	// Each registry accepts only its own tokens.
	userB, pwB, err := b.Token()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.RegistryURL()+"/v2/", nil)
	req.SetBasicAuth(userB, pwB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a answered b's token %d, want 401", resp.StatusCode)
	}
}

func isAPIError(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}
