package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// TestVersionSetAtBuildTime: --version prints the project's version and
// commit given to the linker, and the distribution it is built on.
func TestVersionSetAtBuildTime(t *testing.T) {
	bin, err := proxytest.Build(t.Context(), t.TempDir(), "-ldflags", "-X main.version=v9.8.7 -X main.commit=0123abcd")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v: %s", err, out)
	}
	for _, want := range []string{"ecr-proxy v9.8.7", "commit 0123abcd", "distribution v3.1.2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--version printed %q, want it to contain %q", out, want)
		}
	}
}
