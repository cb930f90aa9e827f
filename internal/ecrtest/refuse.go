package ecrtest

import "net/http"

// RefuseTokens makes the registry refuse every valid token, those minted
// from now on included, until RefuseTokens(0): with 401 (http.StatusUnauthorized)
// it answers ECR's Basic challenge, as for an unknown token; with any other
// status, 403 and "Your authorization token has expired", as for an
// expired one (with no body on HEAD, as ECR and HTTP have it). It is a
// registry that keeps refusing whatever a client mints; GetAuthorizationToken
// goes on answering.
func (e *Emulator) RefuseTokens(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch status {
	case 0, http.StatusUnauthorized:
		e.refuseTokens = status
	default:
		e.refuseTokens = http.StatusForbidden
	}
}

// refusal applies RefuseTokens to the verdict on a presented token.
func (e *Emulator) refusal(s tokenState) tokenState {
	if s != tokenValid {
		return s
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.refuseTokens {
	case http.StatusUnauthorized:
		return tokenUnknown
	case http.StatusForbidden:
		return tokenExpired
	}
	return s
}
