package main

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// credentialHelper runs `registry get` as docker runs a credential helper.
func credentialHelper(t *testing.T, host string, env []string) (user, secret string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), proxyBinary, "get")
	cmd.Env = append(hermeticEnv(t), env...)
	cmd.Stdin = strings.NewReader(host + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("registry get: %v", err)
	}
	var creds struct{ ServerURL, Username, Secret string }
	if err := json.Unmarshal(out, &creds); err != nil {
		t.Fatalf("registry get printed %q: %v", out, err)
	}
	if creds.ServerURL != host {
		t.Errorf("ServerURL = %q, want %q", creds.ServerURL, host)
	}
	return creds.Username, creds.Secret
}

// TestCredentialHelper: `registry get` is a docker credential helper for
// ECR: it mints a token the registry accepts; in the server's placeholder
// mode it mints nothing.
func TestCredentialHelper(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	user, secret := credentialHelper(t, emu.RegistryHost(), emu.Env())
	if user != "AWS" || emu.Count(ecrtest.KindTokenMint) != 1 {
		t.Fatalf("user %q after %d mints, want AWS after 1", user, emu.Count(ecrtest.KindTokenMint))
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, emu.RegistryURL()+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the helper's credentials: ECR answered %d, want 200", resp.StatusCode)
	}

	_, secret = credentialHelper(t, emu.RegistryHost(), append(emu.Env(), placeholderEnv+"=1"))
	if secret != placeholderSecret || emu.Count(ecrtest.KindTokenMint) != 1 {
		t.Errorf("placeholder mode: secret %q after %d mints, want the placeholder and no mint", secret, emu.Count(ecrtest.KindTokenMint))
	}
}
