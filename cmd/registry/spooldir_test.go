package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/logx"
)

// TestSpoolWithoutCacheDirectoryIsPrivate: with a cache that has no
// directory (s3) and no ecr.spooldir, downloads spool to a directory of
// the process's own under the system's temporary one, so that the
// start-up cleanup leaves another proxy's spool files on the same host
// alone.
func TestSpoolWithoutCacheDirectoryIsPrivate(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	other := filepath.Join(tmp, "ecr-proxy-blob-other")
	if err := os.WriteFile(other, []byte("another proxy's download"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := "version: 0.1\nstorage:\n  s3: {bucket: b, region: eu-west-1}\nproxy:\n  remoteurl: " + seedECR + "\necr:\n  push: disabled\n"
	s, err := loadSettings(writeFile(t, file), envMap())
	if err != nil {
		t.Fatal(err)
	}
	spool, err := spoolDir(s)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(spool) != tmp || spool == tmp || !privateSpool(s, spool) {
		t.Fatalf("spool directory %q, want a directory of its own in %q", spool, tmp)
	}
	removeLeftovers(t.Context(), logx.Discard(), spool, nil)
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another proxy's spool file in the temporary directory: %v", err)
	}

	s.ecr.SpoolDir = filepath.Join(tmp, "configured")
	if d, err := spoolDir(s); err != nil || d != s.ecr.SpoolDir || privateSpool(s, d) {
		t.Errorf("with ecr.spooldir: %q, %v; want %q, not private", d, err, s.ecr.SpoolDir)
	}
}
