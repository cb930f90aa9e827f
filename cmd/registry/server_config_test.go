package main

import (
	"strings"
	"testing"
	"time"
)

// TestServerLimitsFromFile: the http section's limits are read from the
// file, unset ones take their defaults, and runServer finds them.
func TestServerLimitsFromFile(t *testing.T) {
	clearRegionEnv(t)
	s, err := loadSettings(writeFile(t, validBase+"http:\n  addr: :5000\n  readheadertimeout: 10s\n  idletimeout: 90s\n  maxconnections: 500\n"),
		envMap())
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	got := s.server.withDefaults()
	want := serverLimits{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second,
		BodyIdleTimeout: defaultBodyIdleTimeout, MaxConnections: 500}
	if got != want {
		t.Errorf("limits %+v, want %+v", got, want)
	}
	if s.dist.HTTP.Addr != ":5000" {
		t.Errorf("http.addr %q: distribution's keys of the section are still its own", s.dist.HTTP.Addr)
	}

	s, err = loadSettings(writeFile(t, validBase), envMap())
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	d := s.server.withDefaults()
	if d.ReadHeaderTimeout != defaultReadHeaderTimeout || d.IdleTimeout != defaultIdleTimeout || d.BodyIdleTimeout != defaultBodyIdleTimeout ||
		d.MaxConnections < minDefaultConnections || d.MaxConnections > maxDefaultConnections {
		t.Errorf("defaults %+v", d)
	}
	if d.spareLife() != maxSpareLife {
		t.Errorf("spare connections live %v with the default header timeout, want %v", d.spareLife(), maxSpareLife)
	}
}

func TestServerLimitsRejected(t *testing.T) {
	clearRegionEnv(t)
	for _, tt := range []struct {
		yaml    string
		wantErr []string // the key and the value
	}{
		{"  idletimeout: -1s\n", []string{"http.idletimeout", "-1s"}},
		{"  readheadertimeout: -5s\n", []string{"http.readheadertimeout", "-5s"}},
		{"  bodyidletimeout: -1m\n", []string{"http.bodyidletimeout", "-1m"}},
		{"  maxconnections: -3\n", []string{"http.maxconnections", "-3"}},
		{"  idletimeout: soon\n", []string{"soon"}},
	} {
		_, err := loadSettings(writeFile(t, validBase+"http:\n"+tt.yaml), envMap())
		if err == nil {
			t.Errorf("%q accepted", tt.yaml)
			continue
		}
		for _, want := range tt.wantErr {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error %q does not mention %q", tt.yaml, err, want)
			}
		}
	}
}

// TestServerLimitsFromEnvironment: the HTTP_* variables set the limits,
// over the file, and refuse what is not a limit.
func TestServerLimitsFromEnvironment(t *testing.T) {
	clearRegionEnv(t)
	s, err := loadSettings("", envMap("ECR", seedECR, "PORT", "5000",
		"HTTP_MAX_CONNECTIONS", "2000", "HTTP_READ_HEADER_TIMEOUT", "15", "HTTP_IDLE_TIMEOUT", "75s", "HTTP_BODY_IDLE_TIMEOUT", "3m"))
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	want := serverLimits{ReadHeaderTimeout: 15 * time.Second, IdleTimeout: 75 * time.Second, BodyIdleTimeout: 3 * time.Minute, MaxConnections: 2000}
	if got := s.server; got != want {
		t.Errorf("limits %+v, want %+v", got, want)
	}

	s, err = loadSettings(writeFile(t, validBase+"http:\n  idletimeout: 90s\n  maxconnections: 500\n"), envMap("HTTP_IDLE_TIMEOUT", "3m"))
	if err != nil {
		t.Fatalf("loadSettings: %v", err)
	}
	if got := s.server; got.IdleTimeout != 3*time.Minute || got.MaxConnections != 500 {
		t.Errorf("limits %+v: want the variable's idle timeout, 3m, and the file's cap, 500", got)
	}

	for _, kv := range [][2]string{
		{"HTTP_MAX_CONNECTIONS", "0"}, {"HTTP_MAX_CONNECTIONS", "many"},
		{"HTTP_IDLE_TIMEOUT", "0s"}, {"HTTP_IDLE_TIMEOUT", "-1m"}, {"HTTP_READ_HEADER_TIMEOUT", "soon"},
		{"HTTP_BODY_IDLE_TIMEOUT", "99999999999999"},
	} {
		_, err := loadSettings("", envMap("ECR", seedECR, "PORT", "5000", kv[0], kv[1]))
		if err == nil {
			t.Errorf("%s=%s accepted", kv[0], kv[1])
		} else if !strings.Contains(err.Error(), kv[0]) || !strings.Contains(err.Error(), kv[1]) {
			t.Errorf("%s=%s: error %q does not name the variable and the value", kv[0], kv[1], err)
		}
	}
}
