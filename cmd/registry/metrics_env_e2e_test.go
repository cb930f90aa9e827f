package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestMetricsAddrInSeedMode: with the seed's variables only, METRICS_ADDR
// serves Prometheus metrics and health on its own address, without pprof
// unless DEBUG_PPROF=true; the start-up line names the metrics address.
func TestMetricsAddrInSeedMode(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	for _, pprof := range []bool{false, true} {
		metricsAddr := reservePort(t)
		dir := t.TempDir()
		p, _ := startSeedProxy(t, func(port string) []string {
			env := append(withoutKey(emu.Env(), "ECR"), "PORT="+port, "ECR="+emu.RegistryURL(),
				"CACHE_DIR="+filepath.Join(dir, "cache"), "METRICS_ADDR="+metricsAddr)
			if pprof {
				env = append(env, "DEBUG_PPROF=true")
			}
			return env
		})
		get := func(path string) (int, string) {
			resp, err := http.Get("http://" + metricsAddr + path) //nolint:noctx // a test
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
			t.Errorf("pprof %v: /metrics %d", pprof, code)
		}
		if code, _ := get("/debug/health"); code != http.StatusOK {
			t.Errorf("pprof %v: /debug/health %d", pprof, code)
		}
		if code, _ := get("/debug/pprof/"); (code == http.StatusOK) != pprof {
			t.Errorf("DEBUG_PPROF %v: /debug/pprof/ answers %d", pprof, code)
		}
		if !strings.Contains(p.Logs(), "metrics=\"http://"+metricsAddr+"/metrics\"") {
			t.Errorf("the start-up line does not name the metrics address:\n%s", p.Logs())
		}
	}
}
