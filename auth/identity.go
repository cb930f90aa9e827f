package auth

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ecr-proxy/ecr-proxy/internal/redact"
)

// CallerIdentityAPI is the one STS call the package needs. *sts.Client
// satisfies it.
type CallerIdentityAPI interface {
	GetCallerIdentity(ctx context.Context, in *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

var _ CallerIdentityAPI = (*sts.Client)(nil)

// Identity is the AWS principal a process acts as. It holds no secret.
type Identity struct {
	// ARN of the principal, such as arn:aws:sts::123456789012:assumed-role/r/s.
	ARN string
	// Account is the principal's 12-digit account.
	Account string
	// Source names the credential provider, such as "EnvConfigCredentials"
	// or "WebIdentityCredentials".
	Source string
}

// WhoAmI retrieves the credentials of creds (to learn their source) and
// asks STS whose they are.
func WhoAmI(ctx context.Context, api CallerIdentityAPI, creds aws.CredentialsProvider) (Identity, error) {
	var id Identity
	if creds == nil {
		return id, fmt.Errorf("who am I: no AWS credentials found")
	}
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return id, fmt.Errorf("retrieve AWS credentials: %w", redact.Error(err))
	}
	id.Source = c.Source
	out, err := api.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return id, fmt.Errorf("get caller identity: %w", redact.Error(err))
	}
	id.ARN = aws.ToString(out.Arn)
	id.Account = aws.ToString(out.Account)
	return id, nil
}
