package ecrtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ClearAWSEnv makes a test hermetic for the AWS SDK: it unsets every AWS_*
// variable (restored after the test), points HOME, AWS_CONFIG_FILE and
// AWS_SHARED_CREDENTIALS_FILE at empty files in a temporary directory, and
// sets AWS_EC2_METADATA_DISABLED=true. It returns that directory. Tests
// using it cannot run in parallel (t.Setenv).
func ClearAWSEnv(t testing.TB) (home string) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "AWS_") {
			continue
		}
		t.Setenv(k, "") // registers the restore
		if err := os.Unsetenv(k); err != nil {
			t.Fatalf("unsetting %s: %v", k, err)
		}
	}
	home = t.TempDir()
	configFile := filepath.Join(home, "aws-config")
	credsFile := filepath.Join(home, "aws-credentials")
	for _, f := range []string{configFile, credsFile} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatalf("writing %s: %v", f, err)
		}
	}
	t.Setenv("HOME", home)
	t.Setenv("AWS_CONFIG_FILE", configFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credsFile)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return home
}
