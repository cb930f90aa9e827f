package validate

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envOnlyDrainTimeout is http.draintimeout when the proxy is configured
// from the environment alone and REGISTRY_HTTP_DRAINTIMEOUT is unset.
const envOnlyDrainTimeout = 30 * time.Second

// shutdownMargin is the least a grace period must leave above the
// proxy's shutdown budget: it exits about a second after it, more on a
// loaded node.
const shutdownMargin = 5 * time.Second

// drainTimeout reads REGISTRY_HTTP_DRAINTIMEOUT as distribution does (a
// Go duration), or the default.
func drainTimeout(t *testing.T, v string, set bool) time.Duration {
	t.Helper()
	if !set {
		return envOnlyDrainTimeout
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		t.Fatalf("REGISTRY_HTTP_DRAINTIMEOUT=%q: not a duration", v)
	}
	return d
}

// TestShutdownBudgetFitsTheGracePeriods: http.draintimeout bounds the
// proxy's whole shutdown (SIGTERM to exit); the Kubernetes grace period
// and the systemd stop timeout must leave it a margin, or the proxy is
// killed with pulls and their downloads in flight.
func TestShutdownBudgetFitsTheGracePeriods(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	pod := m.deployments[0].Spec.Template.Spec
	var drainValue string
	var drainSet bool
	for _, e := range pod.Containers[0].Env {
		if e.Name == "REGISTRY_HTTP_DRAINTIMEOUT" {
			drainValue, drainSet = e.Value, true
		}
	}
	drain := drainTimeout(t, drainValue, drainSet)
	if pod.TerminationGracePeriodSeconds == nil {
		t.Errorf("terminationGracePeriodSeconds unset (30s by default): want at least http.draintimeout %v + %v", drain, shutdownMargin)
	} else if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace < drain+shutdownMargin {
		t.Errorf("terminationGracePeriodSeconds %v: want at least http.draintimeout %v + %v", grace, drain, shutdownMargin)
	}

	env, err := os.ReadFile("../ec2/ecr-proxy.env")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	drainValue, drainSet = "", false
	for _, line := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "REGISTRY_HTTP_DRAINTIMEOUT="); ok {
			drainValue, drainSet = v, true
		}
	}
	drain = drainTimeout(t, drainValue, drainSet)
	unit, err := os.ReadFile("../ec2/ecr-proxy.service")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var stop time.Duration
	for _, line := range strings.Split(string(unit), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "TimeoutStopSec=")
		if !ok {
			continue
		}
		// systemd time spans used here: "45s", "2min", or seconds.
		if secs, err := strconv.Atoi(v); err == nil {
			stop = time.Duration(secs) * time.Second
		} else if stop, err = time.ParseDuration(strings.ReplaceAll(v, "min", "m")); err != nil {
			t.Fatalf("TimeoutStopSec=%s: not a time span this check reads", v)
		}
	}
	if stop < drain+shutdownMargin {
		t.Errorf("ecr-proxy.service TimeoutStopSec %v (90s if unset): want at least http.draintimeout %v + %v", stop, drain, shutdownMargin)
	}
}
