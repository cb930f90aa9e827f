package ecrtest

import "encoding/base64"

// Secrets returns every secret the emulator has handed out or holds: the
// registry token passwords (and each authorizationToken, base64 of
// "AWS:<password>"), the static and temporary secret keys and session
// tokens, the container credentials token, and the signatures of the
// presigned S3 URLs it redirected to. Tests search a proxy's logs and
// metrics for them: none may appear there.
func (e *Emulator) Secrets() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []string{SecretAccessKey, e.containerToken}
	for pw := range e.tokens {
		out = append(out, pw, base64.StdEncoding.EncodeToString([]byte("AWS:"+pw)))
	}
	for _, id := range e.identities {
		out = append(out, id.secret)
		if id.sessionToken != "" {
			out = append(out, id.sessionToken)
		}
	}
	for sig := range e.presigned {
		out = append(out, sig)
	}
	return out
}
