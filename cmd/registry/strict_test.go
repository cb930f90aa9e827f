package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestUnknownKeysStopTheStart: a misspelt key anywhere in the file (top
// level, the ecr section, driver parameters, distribution's sections)
// stops the start with its path and the nearest valid key.
func TestUnknownKeysStopTheStart(t *testing.T) {
	clearRegionEnv(t)
	lru := strings.Replace(validBase, "  filesystem:\n", "  lrufilesystem:\n", 1)
	for _, tt := range []struct {
		yaml string
		want []string
	}{
		{strings.Replace(lru, "rootdirectory: /tmp/x\n", "rootdirectory: /tmp/x\n    maxszie: 75g\n", 1),
			[]string{"storage.lrufilesystem.maxszie", `"maxsize"`}},
		{withECR("  tagtl: 5m\n"), []string{"ecr.tagtl", `"tagttl"`}},
		{validBase + "ecrr:\n  region: eu-west-1\n", []string{"ecrr", `"ecr"`}},
		{validBase + "  ttll: 1h\n", []string{"proxy.ttll", `"ttl"`}},
		{validBase + "http:\n  adr: :5000\n", []string{"http.adr", `"addr"`}},
		{validBase + "http:\n  maxconection: 5\n", []string{"http.maxconection", `"maxconnections"`}},
		{validBase + "http:\n  debug:\n    prometheus:\n      enable: true\n", []string{"http.debug.prometheus.enable", `"enabled"`}},
		{strings.Replace(validBase, "storage:\n", "storage:\n  delet:\n    enabled: true\n", 1), []string{"storage.delet", `"delete"`}},
	} {
		_, err := loadSettings(writeFile(t, tt.yaml), os.LookupEnv)
		if err == nil {
			t.Errorf("%q: accepted", tt.yaml)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not name %s", tt.yaml, err, w)
			}
		}
	}
	// Valid keys of every kind still pass.
	ok := withECR("  tagttl: 5m\n") + "http:\n  addr: :5000\n  maxconnections: 5\n  debug:\n    addr: :5001\n    prometheus:\n      enabled: true\n" +
		"health:\n  storagedriver:\n    enabled: true\nauth:\n  htpasswd:\n    realm: r\n    path: /x\nlog:\n  fields:\n    anything: 1\n"
	if _, err := loadSettings(writeFile(t, ok), os.LookupEnv); err != nil {
		t.Errorf("valid keys refused: %v", err)
	}
}

// TestBadValuesAreErrors: values distribution would panic on are errors
// naming the key and the value, the file and the environment agree on the
// renewal interval, and ENABLE_SSL is echoed as given.
func TestBadValuesAreErrors(t *testing.T) {
	clearRegionEnv(t)
	lru := strings.Replace(validBase, "  filesystem:\n", "  lrufilesystem:\n", 1)
	for _, tt := range []struct{ from, to, want string }{
		{"rootdirectory: /tmp/x\n", "rootdirectory: /tmp/x\n    maxsize: 10x\n", `storage.lrufilesystem.maxsize "10x"`},
		{"rootdirectory: /tmp/x\n", "rootdirectory: /tmp/x\n    lowwater: lots\n", `storage.lrufilesystem.lowwater "lots"`},
		{"  push: anonymous\n", "  push: anonymous\n  renewinterval: 99h\n", `ecr.renewinterval "99h0m0s"`},
	} {
		_, err := loadSettings(writeFile(t, strings.Replace(lru, tt.from, tt.to, 1)), os.LookupEnv)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %s", tt.to, err, tt.want)
		}
	}
	seed := []string{"ECR", seedECR, "PORT", "5000"}
	if _, err := loadSettings("", envMap(append(seed, "RENEW_INTERVAL_HOURS", "99")...)); err == nil {
		t.Error("RENEW_INTERVAL_HOURS=99 accepted")
	}
	s, err := loadSettings("", envMap(append(seed, "RENEW_INTERVAL_HOURS", "90m")...))
	if err != nil || s.ecr.RenewInterval.Minutes() != 90 {
		t.Errorf("RENEW_INTERVAL_HOURS=90m (as ecr.renewinterval takes it): %v", err)
	}
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "tls")
	s, err = loadSettings("", envMap(append(seed, "ENABLE_SSL", "yes", "SSL_CERTIFICATE", cert, "SSL_KEY", key)...))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(s.notes, "\n"), "ENABLE_SSL=yes: TLS on") || s.startupFields()["tls"] != "on" {
		t.Errorf("ENABLE_SSL=yes: notes %q, fields %v; want it echoed as given, and TLS on", s.notes, s.startupFields())
	}
	f := s.startupFields()
	for k, want := range map[string]string{"upstream": seedECR, "cache": "/cache", "cache_max": "75g", "auth": "none",
		"push": "anonymous", "delete": "refused", "metrics": "off", "region": "eu-central-1"} {
		if f[k] != want {
			t.Errorf("start-up line %s=%v, want %s", k, f[k], want)
		}
	}
}

// TestDriverPanicIsAnError: a driver parameter distribution panics on
// (here maxthreads) stops the start with an error, not a stack trace.
func TestDriverPanicIsAnError(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, "version: 0.1\nstorage:\n  lrufilesystem:\n    rootdirectory: "+dir+"\n    maxthreads: lots\n"+
		"http:\n  addr: 127.0.0.1:0\nproxy:\n  remoteurl: "+seedECR+"\necr:\n  push: anonymous\n")
	cmd := exec.CommandContext(t.Context(), proxyBinary, "serve", cfg)
	cmd.Env = hermeticEnv(t)
	out, err := cmd.CombinedOutput()
	if err == nil || strings.Contains(string(out), "goroutine ") || !strings.Contains(string(out), "storage.lrufilesystem") ||
		!strings.Contains(string(out), "maxthreads") {
		t.Errorf("serve with maxthreads: lots: %v\n%s\nwant an error naming storage.lrufilesystem and maxthreads, no stack trace", err, out)
	}
}
