package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// crane runs the crane CLI with a hermetic environment.
func crane(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), craneBinary, args...)
	cmd.Env = append(hermeticEnv(t), "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestCraneCLI: the crane CLI pulls an image through the proxy, pushes it
// back under another name, and reads its digest, as a user would.
func TestCraneCLI(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1.2", 2, 256<<10, types.DockerManifestSchema2)
	p := startProxy(t, emu, proxyOpts{})
	tarball := filepath.Join(t.TempDir(), "app.tar")

	if got := crane(t, "digest", "--insecure", p.Addr+"/team/app:1.2"); got != d {
		t.Errorf("crane digest = %q, want %s", got, d)
	}
	crane(t, "pull", "--insecure", "--format", "tarball", p.Addr+"/team/app:1.2", tarball)
	crane(t, "push", "--insecure", tarball, p.Addr+"/team/copy:1.2")
	emu.ResetCounts()
	if got := crane(t, "digest", "--insecure", p.Addr+"/team/copy:1.2"); got != d {
		t.Errorf("digest of the pushed copy = %q, want %s", got, d)
	}
	if n := emu.Count(ecrtest.KindManifestHEAD) + emu.Count(ecrtest.KindManifestGET); n == 0 {
		t.Error("the pushed copy's tag was not resolved at ECR: the push did not land there")
	}
	crane(t, "validate", "--insecure", "--remote", p.Addr+"/team/copy:1.2")
}
