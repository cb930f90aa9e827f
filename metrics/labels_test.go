package metrics

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/ecr-proxy/ecr-proxy/auth"
)

// scriptedTransport answers every request with status and a short body.
type scriptedTransport struct{ status int }

func (s scriptedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: s.status, Body: io.NopCloser(strings.NewReader("body")), Request: req}, nil
}

// feedEverything drives every observer of r with requests full of
// repository names, digests, presigned queries and secrets.
func feedEverything(t *testing.T, r *recorder) {
	t.Helper()
	urls := []string{
		"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/",
		"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/secret-team/private-app/manifests/v1.2.3",
		"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/secret-team/private-app/blobs/sha256:deadbeefcafe",
		"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/secret-team/private-app/blobs/uploads/upload-uuid-1?_state=opaque",
		"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/secret-team/private-app/tags/list?last=v1.2.3",
		"https://prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com/a/sha256:deadbeefcafe?X-Amz-Signature=SIGNATUREVALUE&X-Amz-Credential=ASIASECRETKEYID",
		"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/_catalog?n=10",
		"https://elsewhere.example/weird/path/secret-team",
	}
	methods := []string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "PROPFIND"}
	for i, u := range urls {
		for j, m := range methods {
			var rt http.RoundTripper = scriptedTransport{status: []int{200, 201, 202, 307, 401, 403, 404, 429, 500, 503, 999}[(i+j)%11]}
			if (i+j)%5 == 0 {
				rt = failingTransport{err: errors.New("dial tcp: lookup secret-team.example: no such host")}
			}
			req, err := http.NewRequest(m, u, nil)
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			req.Header.Set("Authorization", "Basic QVdTOlRPS0VOU0VDUkVU")
			resp, err := r.instrument("shared", rt).RoundTrip(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}
	}
	r.observeMint("shared", auth.MintEvent{Token: auth.Token{Username: "AWS", Password: "TOKENSECRET", ExpiresAt: time.Unix(1_800_000_000, 0)}, Duration: time.Second})
	r.observeMint("shared", auth.MintEvent{Err: errors.New("AccessDenied for arn:aws:iam::123456789012:role/secret-role"), Duration: time.Second})
	r.observeUncached(UncachedDiskFull)
	r.observeUncached("sha256:deadbeefcafe")
	for _, kind := range []string{KindManifest, KindBlob, "sha256:deadbeefcafe", "secret-team/private-app", "tags"} {
		r.observeServed("shared", kind, true, 10)
		r.observeServed("shared", kind, false, 10)
	}
	r.sfFetches.Inc()
	r.waitersChanged(1)
	r.waitersChanged(-1)
}

// allowed is every value each label may take.
var allowed = map[string]map[string]bool{
	"kind":   set(upstreamPing, upstreamManifest, upstreamBlob, upstreamTags, upstreamUpload, upstreamS3, upstreamOther),
	"method": set("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "other"),
	"code":   codes(),
	"result": set(resultHit, resultMiss, resultSuccess, resultFailure),
	"source": set(sourceCache, sourceUp),
	"reason": set(UncachedDiskFull, UncachedTooLarge, UncachedCacheFull),
	"le":     nil, // histogram buckets, fixed by the definition
	// the configured registries' prefixes (or the one registry's host):
	// feedEverything names one, the requests it sends never add another
	"registry": set("shared"),
}

func set(vs ...string) map[string]bool {
	m := map[string]bool{}
	for _, v := range vs {
		m[v] = true
	}
	return m
}

func codes() map[string]bool {
	m := set("error", "other")
	for c := 100; c <= 599; c++ {
		m[strconv.Itoa(c)] = true
	}
	return m
}

func TestLabelValuesStayInFixedSets(t *testing.T) {
	t.Parallel()
	r, reg := testRecorder(t, time.Millisecond)
	feedEverything(t, r)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				vals, known := allowed[lp.GetName()]
				if !known {
					t.Errorf("%s: label %q is not one of the fixed labels", mf.GetName(), lp.GetName())
					continue
				}
				if vals != nil && !vals[lp.GetValue()] {
					t.Errorf("%s: label %s=%q outside its fixed set", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

func TestNoSecretsOrIdentifiersInMetrics(t *testing.T) {
	t.Parallel()
	r, reg := testRecorder(t, time.Millisecond)
	feedEverything(t, r)
	text := exposition(t, reg)
	for _, s := range []string{
		"TOKENSECRET", "QVdTOlRPS0VOU0VDUkVU", "SIGNATUREVALUE", "ASIASECRETKEYID", "X-Amz",
		"secret-team", "private-app", "deadbeef", "sha256", "upload-uuid", "123456789012", "v1.2.3",
		"amazonaws", "secret-role", "no such host",
	} {
		if strings.Contains(text, s) {
			t.Errorf("metrics contain %q", s)
		}
	}
}

func TestMetricsFollowPrometheusConventions(t *testing.T) {
	t.Parallel()
	r, reg := testRecorder(t, time.Millisecond)
	feedEverything(t, r)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), namespace+"_") {
			t.Errorf("%s lacks the %s_ prefix", mf.GetName(), namespace)
		}
	}
}

func TestNewRegistersWithTheGivenRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// A second set on the same registry feeds the same series.
	m2, err := New(reg)
	if err != nil {
		t.Fatalf("New again on the same registry: %v", err)
	}
	sf := m.Singleflight()
	sf.FlightStarted()
	sf.WaitersChanged(1)
	sf.WaitersChanged(-1)
	m2.Singleflight().FlightStarted()
	m.Singleflight().Uncached(UncachedDiskFull)
	m.Singleflight().Uncached("not a reason")
	m.ObserveServed(KindBlob, true, 0)
	m.ForRegistry("shared").ObserveMint(auth.MintEvent{Token: auth.Token{ExpiresAt: time.Unix(1_800_000_000, 0)}})
	if got, _ := value(t, reg, "ecrproxy_singleflight_fetches_total"); got != 2 {
		t.Errorf("singleflight fetches = %v, want 2", got)
	}
	if got, _ := value(t, reg, "ecrproxy_token_expiry_timestamp_seconds", "registry", "shared"); got != 1_800_000_000 {
		t.Errorf("token expiry = %v, want 1.8e9", got)
	}
	want := `# HELP ecrproxy_cache_uncached_total Blobs fetched from ECR and streamed to their clients without being cached, by reason: disk_full (no room on the cache's disk), too_large (larger than maxsize) or cache_full (the room under maxsize held by blobs in use and other downloads); disk_full also counts manifests and tags served without being stored.
# TYPE ecrproxy_cache_uncached_total counter
ecrproxy_cache_uncached_total{reason="cache_full"} 0
ecrproxy_cache_uncached_total{reason="disk_full"} 1
ecrproxy_cache_uncached_total{reason="too_large"} 0
`
	if diff := cmp.Diff(want, exposition(t, reg, "ecrproxy_cache_uncached_total")); diff != "" {
		t.Errorf("uncached (-want +got):\n%s", diff)
	}
	// Nothing reached the default registry.
	if _, ok := value(t, prometheus.DefaultGatherer, "ecrproxy_singleflight_fetches_total"); ok {
		t.Error("New registered with prometheus.DefaultRegisterer")
	}
	// A nil registry registers nowhere.
	if _, err := New(nil); err != nil {
		t.Errorf("New(nil): %v", err)
	}
	// A conflicting definition under one of our names is reported.
	bad := prometheus.NewRegistry()
	if err := bad.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "ecrproxy_token_mints_total", Help: "x"})); err != nil {
		t.Fatalf("register conflicting gauge: %v", err)
	}
	if _, err := New(bad); err == nil {
		t.Error("New over a conflicting collector: want an error")
	}
}
