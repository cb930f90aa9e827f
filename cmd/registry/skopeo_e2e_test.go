package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestSkopeoCopy: skopeo (containers/image, the library of podman, buildah
// and CRI-O) copies an image out of the proxy and pushes it back through
// it to ECR.
func TestSkopeoCopy(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("skopeo is not installed; scripts/test.sh installs it")
		}
		t.Skip("skopeo is not installed (scripts/test.sh installs it)")
	}
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 2, 6<<20, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), skopeo, append([]string{"--policy", policy}, args...)...)
		cmd.Env = append(hermeticEnv(t), "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"), "TMPDIR="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
		"docker://"+p.Addr+"/team/app:1", "docker://"+p.Addr+"/team/skopeo:1")
	out := run("inspect", "--tls-verify=false", "--raw", "docker://"+p.Addr+"/team/skopeo:1")
	if sha([]byte(out)) != d {
		t.Errorf("the copy pushed through the proxy has digest %s, want %s", sha([]byte(out)), d)
	}
	emu.ResetCounts()
	run("copy", "--src-tls-verify=false", "docker://"+p.Addr+"/team/skopeo:1", "dir:"+filepath.Join(dir, "out"))
	if n := emu.Count(ecrtest.KindBlobGET); n != 0 {
		t.Errorf("pulling what skopeo pushed fetched %d blobs from ECR; write-through should have cached them", n)
	}
}
