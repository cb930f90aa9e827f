package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestSeedRecipe runs the recipe of the package documentation: the
// emulator started in the background with -seed and -env-file writes the
// file promptly (the recipe does not hang), logs no error-level line while
// seeding, and the login it exports pushes an image of one's own.
func TestSeedRecipe(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ecr-emulator")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	envFile := filepath.Join(dir, "emu.env")
	logFile, err := os.Create(filepath.Join(dir, "emu.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "-registry-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0", "-s3-addr", "127.0.0.2:0",
		"-seed", "team/app:1.0", "-seed", "team/app:2.0", "-env-file", envFile)
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if fi, err := os.Stat(envFile); err == nil && fi.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("-env-file not written within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	env := readExports(t, envFile)
	logs, _ := os.ReadFile(logFile.Name())
	if strings.Contains(string(logs), "level=error") || !strings.Contains(string(logs), "seeded team/app:2.0@sha256:") {
		t.Errorf("start-up log has error-level lines or lacks the seeded images:\n%s", logs)
	}
	host := strings.TrimPrefix(env["ECR"], "http://")
	if host == "" || env["ECR_EMULATOR_USER"] != "AWS" || env["ECR_EMULATOR_PASSWORD"] == "" {
		t.Fatalf("exports %v: want ECR and the registry login", env)
	}
	img, err := ecrtest.RandomImage(1, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/mine/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	auth := &authn.Basic{Username: env["ECR_EMULATOR_USER"], Password: env["ECR_EMULATOR_PASSWORD"]}
	if err := remote.Write(ref, img, remote.WithAuth(auth), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push with the exported login: %v", err)
	}
	if _, err := remote.Head(ref, remote.WithAuth(auth), remote.WithContext(t.Context())); err != nil {
		t.Errorf("the pushed image is not there: %v", err)
	}
}

// readExports reads the `export K="V"` lines of path.
func readExports(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path) //nolint:gosec // the test's own file
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() //nolint:errcheck // read only
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok && !strings.HasPrefix(k, "#") {
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}
