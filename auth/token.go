package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecr"
)

// ECRAPI is the one ECR API call the package needs. *ecr.Client satisfies it.
type ECRAPI interface {
	GetAuthorizationToken(ctx context.Context, in *ecr.GetAuthorizationTokenInput, optFns ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error)
}

var _ ECRAPI = (*ecr.Client)(nil)

// assumedLifetime is used when ECR answers without expiresAt, which it is
// not known to do; it is short so that such a token is soon replaced.
const assumedLifetime = time.Hour

// Token is an ECR registry credential. Its String method redacts the
// secret, so a Token may be logged.
type Token struct {
	// Username is always "AWS" for ECR.
	Username string
	// Password is the secret part. Never log it.
	Password string
	// MintedAt is when the token was received.
	MintedAt time.Time
	// ExpiresAt is when ECR stops accepting the token.
	ExpiresAt time.Time

	encoded string // base64("AWS:<password>") exactly as ECR returned it
}

// BasicAuth returns the value of an Authorization header carrying the token.
func (t Token) BasicAuth() string { return "Basic " + t.encoded }

// String describes the token without its secret.
func (t Token) String() string {
	return fmt.Sprintf("ECR token for %s, minted %s, expires %s", t.Username,
		t.MintedAt.UTC().Format(time.RFC3339), t.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString is String, so that %#v does not print the secret either.
func (t Token) GoString() string { return t.String() }

// same reports whether t and o are the same credential.
func (t Token) same(o Token) bool { return t.encoded == o.encoded }

// decodeToken turns the first authorization data of a
// GetAuthorizationToken answer into a Token.
func decodeToken(out *ecr.GetAuthorizationTokenOutput, now time.Time) (Token, error) {
	if out == nil || len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return Token{}, ErrNoToken
	}
	d := out.AuthorizationData[0]
	encoded := *d.AuthorizationToken
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		// The error of DecodeString names a byte offset only, never content.
		return Token{}, fmt.Errorf("decode ECR authorization token: %w", err)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pass == "" {
		return Token{}, fmt.Errorf("decode ECR authorization token: %w", errMalformedToken)
	}
	expires := now.Add(assumedLifetime)
	if d.ExpiresAt != nil {
		expires = *d.ExpiresAt
	}
	return Token{Username: user, Password: pass, MintedAt: now, ExpiresAt: expires, encoded: encoded}, nil
}
