package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validBase is a minimal valid configuration; its ecr section allows
// anonymous push (see withECR).
const validBase = `version: 0.1
ecr:
  push: anonymous
storage:
  filesystem:
    rootdirectory: /tmp/x
proxy:
  remoteurl: https://123456789012.dkr.ecr.eu-west-1.amazonaws.com
`

// withECR returns validBase with lines added to its ecr section.
func withECR(lines string) string {
	return strings.Replace(validBase, "  push: anonymous\n", "  push: anonymous\n"+lines, 1)
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clearRegionEnv keeps the caller's AWS region out of the test.
func clearRegionEnv(t *testing.T) {
	t.Helper()
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
}

func TestLoadSettingsRejects(t *testing.T) {
	clearRegionEnv(t)
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings: the key and the value
	}{
		{"no remoteurl", "version: 0.1\nstorage:\n  inmemory: {}\n", []string{"proxy.remoteurl is required"}},
		{"remoteurl with path", strings.Replace(validBase, "amazonaws.com", "amazonaws.com/team", 1),
			[]string{"proxy.remoteurl", "amazonaws.com/team"}},
		{"remoteurl not a URL", strings.Replace(validBase, "https://", "", 1), []string{"proxy.remoteurl", "123456789012.dkr"}},
		{"username", validBase + "  username: AWS\n", []string{"proxy.username"}},
		{"exec", validBase + "  exec:\n    command: /bin/helper\n", []string{"proxy.exec", "/bin/helper"}},
		{"blob descriptor cache", strings.Replace(validBase, "storage:\n", "storage:\n  cache:\n    blobdescriptor: inmemory\n", 1),
			[]string{"storage.cache.blobdescriptor", "inmemory"}},
		{"no region for a loopback registry", strings.Replace(validBase, "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com", "http://127.0.0.1:5000", 1),
			[]string{"ecr.region", "AWS_REGION", "127.0.0.1:5000"}},
		{"negative renew interval", withECR("  renewinterval: -1h\n"), []string{"ecr.renewinterval", "-1h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadSettings(writeFile(t, tt.yaml), os.LookupEnv)
			if err == nil {
				t.Fatal("loadSettings succeeded")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestLoadSettings(t *testing.T) {
	clearRegionEnv(t)
	s, err := loadSettings(writeFile(t, withECR("  renewinterval: 2h\n")), os.LookupEnv)
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	if s.region != "eu-west-1" || s.ecr.RenewInterval != 2*time.Hour {
		t.Errorf("region %q, renew interval %v; want eu-west-1 and 2h", s.region, s.ecr.RenewInterval)
	}
	t.Setenv("AWS_REGION", "us-east-2")
	t.Setenv("REGISTRY_PROXY_REMOTEURL", "https://210987654321.dkr.ecr.ap-south-1.amazonaws.com")
	s, err = loadSettings(writeFile(t, validBase), os.LookupEnv)
	if err != nil {
		t.Fatalf("loadSettings with overrides: %v", err)
	}
	if s.region != "ap-south-1" || !strings.Contains(s.dist.Proxy.RemoteURL, "210987654321") { // the host's region wins over AWS_REGION
		t.Errorf("overrides not applied: region %q, remoteurl %q", s.region, s.dist.Proxy.RemoteURL)
	}
}

func TestExampleConfigIsAccepted(t *testing.T) {
	clearRegionEnv(t)
	s, err := loadSettings(filepath.Join("..", "..", "config.yml.example"), os.LookupEnv)
	if err != nil {
		t.Fatalf("config.yml.example: %v", err)
	}
	if s.region != "eu-west-1" || s.dist.HTTP.Addr != ":5000" {
		t.Errorf("example parsed as region %q addr %q", s.region, s.dist.HTTP.Addr)
	}
}
