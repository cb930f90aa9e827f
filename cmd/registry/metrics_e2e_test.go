package main

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// scrape reads the proxy's Prometheus metrics.
func scrape(t *testing.T, p *proxytest.Proxy) string {
	t.Helper()
	if p.DebugAddr == "" {
		t.Fatal("the proxy has no debug server")
	}
	resp, err := http.Get("http://" + p.DebugAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// metric returns the value of the series `name{labels}` (labels in the
// exposition's sorted order, "" for none), or -1 when absent.
func metric(text, name, labels string) float64 {
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	s := bufio.NewScanner(strings.NewReader(text))
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// waitServed waits until the proxy has logged the request lines of n
// GETs whose path contains pathPart ("/blobs/", "/manifests/"). The
// gateway records a manifest or blob read in the metrics
// (ecrproxy_cache_requests_total, ecrproxy_served_bytes_total), then logs
// its line, once the handler returns, which may be after the client has
// read the whole response: a scrape right after a pull could miss its
// last reads.
func waitServed(t *testing.T, p *proxytest.Proxy, n int, pathPart string) {
	t.Helper()
	_, err := p.WaitForLines(t.Context(), n, func(l string) bool {
		return strings.Contains(l, "msg=request") && strings.Contains(l, "method=GET") && strings.Contains(l, pathPart)
	})
	if err != nil {
		t.Fatalf("request lines of %d GETs of %s: %v", n, pathPart, err)
	}
}

// waitForMetric scrapes the proxy's metrics until the value of the series
// `name{labels}` (see metric) satisfies ok or pollUntil gives up, and
// returns the last value read. For counters the proxy updates after the
// client was answered, such as evictions made by commits to the cache.
func waitForMetric(t *testing.T, p *proxytest.Proxy, name, labels string, ok func(float64) bool) float64 {
	t.Helper()
	var v float64
	pollUntil(t, func() bool {
		v = metric(scrape(t, p), name, labels)
		return ok(v)
	})
	return v
}

// TestMetricsMatchWhatECRSaw scrapes /metrics after a cold and a warm pull
// and checks hits, misses, bytes and tokens against the emulator's counts.
func TestMetricsMatchWhatECRSaw(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d, want := seedImageContent(t, emu, "team/app:1", 3, 256<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})

	mustPull(t, p, "team/app:1", d)
	blobs := float64(len(want.layers) + 1) // and the config
	waitServed(t, p, 1, "/manifests/")
	waitServed(t, p, int(blobs), "/blobs/")
	cold := scrape(t, p)
	// One registry without a prefix is labelled with its host.
	reg := `registry="` + emu.RegistryHost() + `"`
	checks := []struct {
		name, labels string
		want         float64
	}{
		{"ecrproxy_cache_requests_total", `kind="blob",` + reg + `,result="miss"`, float64(emu.Count(ecrtest.KindBlobGET))},
		{"ecrproxy_cache_requests_total", `kind="blob",` + reg + `,result="miss"`, blobs},
		{"ecrproxy_cache_requests_total", `kind="blob",` + reg + `,result="hit"`, 0},
		{"ecrproxy_cache_requests_total", `kind="manifest",` + reg + `,result="miss"`, float64(emu.Count(ecrtest.KindManifestGET))},
		{"ecrproxy_token_mints_total", reg + `,result="success"`, float64(emu.Count(ecrtest.KindTokenMint))},
		{"ecrproxy_token_mints_total", reg + `,result="failure"`, 0},
		{"ecrproxy_upstream_requests_total", `code="200",kind="s3",method="GET",` + reg, float64(emu.Count(ecrtest.KindS3GET))},
	}
	for _, c := range checks {
		if got := metric(cold, c.name, c.labels); got != c.want {
			t.Errorf("after the cold pull: %s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	upstreamBytes := metric(cold, "ecrproxy_served_bytes_total", `kind="blob",`+reg+`,source="upstream"`)
	if upstreamBytes <= float64(len(want.layers))*(256<<10) {
		t.Errorf("blob bytes served from upstream = %v, want the image's blobs", upstreamBytes)
	}
	expiry := metric(cold, "ecrproxy_token_expiry_timestamp_seconds", reg)
	if in := time.Until(time.Unix(int64(expiry), 0)); in < 11*time.Hour || in > 13*time.Hour {
		t.Errorf("token expires in %v, want about 12 h (the emulator's lifetime)", in)
	}

	emu.ResetCounts()
	mustPull(t, p, "team/app@"+d, d)
	waitServed(t, p, 2*int(blobs), "/blobs/")
	warm := scrape(t, p)
	if got := metric(warm, "ecrproxy_cache_requests_total", `kind="blob",`+reg+`,result="hit"`); got != blobs {
		t.Errorf("after the warm pull: blob hits = %v, want %v", got, blobs)
	}
	if got := metric(warm, "ecrproxy_cache_requests_total", `kind="blob",`+reg+`,result="miss"`); got != blobs {
		t.Errorf("after the warm pull: blob misses = %v, want still %v", got, blobs)
	}
	if got := metric(warm, "ecrproxy_served_bytes_total", `kind="blob",`+reg+`,source="cache"`); got != upstreamBytes {
		t.Errorf("blob bytes from the cache = %v, want the %v fetched cold", got, upstreamBytes)
	}
	if got := metric(warm, "ecrproxy_token_mints_total", reg+`,result="success"`); got != 1 || emu.Count(ecrtest.KindTokenMint) != 0 {
		t.Errorf("the warm pull minted: metric %v, emulator %d", got, emu.Count(ecrtest.KindTokenMint))
	}
}

// TestNoSecretInLogsOrMetrics runs a whole pull, a token expiry and a
// blob redirected to presigned S3 URLs at debug log level, and searches
// every log line and metric for every secret the emulator handed out.
func TestNoSecretInLogsOrMetrics(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 2, 64<<10, types.OCIManifestSchema1)
	d2 := seedImage(t, emu, "team/app:2", 1, 64<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{LogLevel: "debug"}})
	mustPull(t, p, "team/app:1", d)
	emu.ExpireTokens()
	mustPull(t, p, "team/app:2", d2)
	out := p.Logs() + scrape(t, p)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	out += p.Logs()
	secrets := emu.Secrets()
	if len(secrets) < 4 {
		t.Fatalf("the emulator reports %d secrets; the test would prove nothing", len(secrets))
	}
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(out, s) {
			t.Errorf("a secret (%d chars, starting %q) appears in the proxy's logs or metrics", len(s), s[:4])
		}
	}
	for _, leak := range []string{"X-Amz-Signature=", "X-Amz-Credential=", "X-Amz-Security-Token=", "Authorization: Basic"} {
		if strings.Contains(out, leak) {
			t.Errorf("%q appears in the proxy's logs or metrics", leak)
		}
	}
}
