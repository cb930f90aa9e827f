package ecrtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"
)

// tokenPasswordBytes random bytes give a 2400-character password, as long
// as real ECR tokens (which exceed 2000 characters).
const tokenPasswordBytes = 1800

// registryToken is a password minted for the registry.
type registryToken struct {
	expiresAt time.Time
	expired   bool // forced by ExpireTokens
}

// tokenState is the verdict on a presented password.
type tokenState int

const (
	tokenUnknown tokenState = iota
	tokenValid
	tokenExpired
)

// mint creates a registry password and remembers it. It counts as a mint
// only through its callers.
func (e *Emulator) mint() (password string, expiresAt time.Time, err error) {
	b := make([]byte, tokenPasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, fmt.Errorf("generating token: %w", err)
	}
	password = base64.RawURLEncoding.EncodeToString(b)
	e.mu.Lock()
	defer e.mu.Unlock()
	expiresAt = e.cfg.clock().Add(e.tokenLifetime)
	e.tokens[password] = &registryToken{expiresAt: expiresAt}
	return password, expiresAt, nil
}

// checkToken tells whether password is a valid, expired or unknown token.
func (e *Emulator) checkToken(password string) tokenState {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tokens[password]
	if !ok {
		return tokenUnknown
	}
	if t.expired || !e.cfg.clock().Before(t.expiresAt) {
		return tokenExpired
	}
	return tokenValid
}

// Token mints a registry token directly, as GetAuthorizationToken would,
// and counts it as a mint. Use it with Basic authentication.
func (e *Emulator) Token() (user, password string, err error) {
	e.count(KindTokenMint)
	password, _, err = e.mint()
	if err != nil {
		return "", "", err
	}
	return "AWS", password, nil
}

// SetTokenLifetime sets the lifetime of tokens minted from now on.
func (e *Emulator) SetTokenLifetime(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokenLifetime = d
}

// ExpireTokens makes every token minted so far answer 403 (expired).
func (e *Emulator) ExpireTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.tokens {
		t.expired = true
	}
}

// RevokeTokens forgets every token minted so far: they answer 401.
func (e *Emulator) RevokeTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.tokens)
}

// randomHex returns n random bytes as hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}
