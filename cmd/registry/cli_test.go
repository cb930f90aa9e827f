package main

import (
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// TestHelp: `registry --help` says what the program is and lists
// healthcheck; `serve --help` shows both ways to configure it.
func TestHelp(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Amazon ECR", "pull-through cache", "healthcheck", "garbage-collect", "serve"}},
		{[]string{"serve", "--help"}, []string{"configuration file", "config.yml.example", "REGISTRY_CONFIGURATION_PATH",
			"ECR=https://", "PORT", "CACHE_MAX_SIZE", "METRICS_ADDR", "ECR_PUSH"}},
	} {
		out, err := exec.CommandContext(t.Context(), proxyBinary, tt.args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", tt.args, err, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%v does not say %q:\n%s", tt.args, w, out)
			}
		}
	}
}

// TestVersionFromBuildInfo: on a go build that records VCS information,
// --version gives the commit Go recorded; without it, it says so.
func TestVersionFromBuildInfo(t *testing.T) {
	head, err := exec.CommandContext(t.Context(), "git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	for flag, want := range map[string]string{
		"-buildvcs=true":  "commit " + strings.TrimSpace(string(head)),
		"-buildvcs=false": "commit unknown (built without VCS information)",
	} {
		bin, err := proxytest.Build(t.Context(), t.TempDir(), flag)
		if err != nil {
			t.Fatal(err)
		}
		if info, _ := exec.CommandContext(t.Context(), "go", "version", "-m", bin).Output(); flag == "-buildvcs=true" &&
			!strings.Contains(string(info), "vcs.revision") {
			t.Logf("go build %s recorded no revision here (a git worktree?): skipped", flag)
			continue
		}
		out, err := exec.CommandContext(t.Context(), bin, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s: --version printed %q (%v), want %q", flag, out, err, want)
		}
	}
}

// TestGarbageCollectRefusedWhileServing: garbage-collect refuses to run
// on a cache a proxy serves from, saying why, and runs once it stopped.
func TestGarbageCollectRefusedWhileServing(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	c := newLRUCache(t, emu, "64m")
	p := c.start(t)
	out, rc := runGC(t, c)
	if rc == 0 || !strings.Contains(out, "a proxy is serving from the cache") {
		t.Errorf("garbage-collect while serving: exit %d, %q; want a refusal saying a proxy serves from the cache", rc, out)
	}
	stop(t, p)
	mustGC(t, c)
}

// TestVCSCommit: the revision Go records, marked dirty when the tree had
// changes; the fallback without one.
func TestVCSCommit(t *testing.T) {
	for _, tt := range []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}}, "abc123"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}, "abc123-dirty"},
		{[]debug.BuildSetting{{Key: "GOOS", Value: "linux"}}, "none"},
	} {
		if got := vcsCommit(tt.settings, "none"); got != tt.want {
			t.Errorf("vcsCommit(%v) = %q, want %q", tt.settings, got, tt.want)
		}
	}
}

// TestLocalConfigIgnored: a config.yml made from config.yml.example is
// ignored by git, and the example says what to change to try it as a
// user who cannot write /cache.
func TestLocalConfigIgnored(t *testing.T) {
	if err := exec.CommandContext(t.Context(), "git", "-C", "../..", "rev-parse").Run(); err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	if err := exec.CommandContext(t.Context(), "git", "-C", "../..", "check-ignore", "-q", "config.yml").Run(); err != nil {
		t.Errorf("config.yml is not ignored by git: %v", err)
	}
	example, err := os.ReadFile("../../config.yml.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(example), "/tmp/ecr-proxy-cache") {
		t.Error("config.yml.example does not say which cache directory to use locally")
	}
}
