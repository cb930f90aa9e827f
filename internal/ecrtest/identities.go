package ecrtest

import (
	"crypto/rand"
	"fmt"
	"time"
)

// The static IAM user key pair the emulator always accepts. Its caller ARN
// is arn:aws:iam::<account>:user/emulator.
const (
	AccessKeyID     = "AKIDEMULATOR"
	SecretAccessKey = "ecrtest/emulator/secret/access/key/EXAMPLE"
)

// identity is a principal the emulator knows by access key ID.
type identity struct {
	secret       string
	sessionToken string // empty for the static key
	arn          string
	userID       string
}

// credentials are temporary credentials handed out by STS, IMDS or the
// container endpoint.
type credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
	ARN             string
	UserID          string
}

const upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

func randomString(n int, alphabet string) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating random string: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}

// issueCredentials creates temporary credentials (ASIA… key, secret,
// session token) for the principal arn and remembers them, so that ECR and
// STS accept them. They are not refused after expiry: only the SDK's
// refresh timing depends on Expiration.
func (e *Emulator) issueCredentials(arn, userID string, lifetime time.Duration) (credentials, error) {
	suffix, err := randomString(16, upperAlnum)
	if err != nil {
		return credentials{}, err
	}
	secret, err := randomString(40, upperAlnum+"abcdefghijklmnopqrstuvwxyz+/")
	if err != nil {
		return credentials{}, err
	}
	token, err := randomString(356, upperAlnum+"abcdefghijklmnopqrstuvwxyz0189+/")
	if err != nil {
		return credentials{}, err
	}
	c := credentials{
		AccessKeyID:     "ASIA" + suffix,
		SecretAccessKey: secret,
		SessionToken:    token,
		ARN:             arn,
		UserID:          userID,
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c.Expiration = e.cfg.clock().Add(lifetime).UTC().Truncate(time.Second)
	e.identities[c.AccessKeyID] = identity{secret: secret, sessionToken: token, arn: arn, userID: userID}
	return c, nil
}

func (e *Emulator) lookupIdentity(akid string) (identity, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.identities[akid]
	return id, ok
}
