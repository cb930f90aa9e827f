package metrics

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestObserveServed(t *testing.T) {
	t.Parallel()
	type served struct {
		kind  string
		hit   bool
		bytes int64
	}
	tests := []struct {
		name string
		in   []served
		want string
	}{{
		name: "nothing served: all four series at zero",
		want: `# HELP ecrproxy_cache_requests_total Successful manifest and blob GETs answered, by registry, kind and whether they were served from the cache (hit) or fetched from ECR (miss).
# TYPE ecrproxy_cache_requests_total counter
ecrproxy_cache_requests_total{kind="blob",registry="shared",result="hit"} 0
ecrproxy_cache_requests_total{kind="blob",registry="shared",result="miss"} 0
ecrproxy_cache_requests_total{kind="manifest",registry="shared",result="hit"} 0
ecrproxy_cache_requests_total{kind="manifest",registry="shared",result="miss"} 0
# HELP ecrproxy_served_bytes_total Bytes of manifests and blobs written to clients, by registry, kind and source: the cache (hits) or ECR (misses).
# TYPE ecrproxy_served_bytes_total counter
ecrproxy_served_bytes_total{kind="blob",registry="shared",source="cache"} 0
ecrproxy_served_bytes_total{kind="blob",registry="shared",source="upstream"} 0
ecrproxy_served_bytes_total{kind="manifest",registry="shared",source="cache"} 0
ecrproxy_served_bytes_total{kind="manifest",registry="shared",source="upstream"} 0
`,
	}, {
		name: "cold then warm pull",
		in: []served{
			{KindManifest, false, 500}, {KindBlob, false, 1000}, {KindBlob, false, 2000},
			{KindManifest, true, 500}, {KindBlob, true, 1000}, {KindBlob, true, 2000},
		},
		want: `# HELP ecrproxy_cache_requests_total Successful manifest and blob GETs answered, by registry, kind and whether they were served from the cache (hit) or fetched from ECR (miss).
# TYPE ecrproxy_cache_requests_total counter
ecrproxy_cache_requests_total{kind="blob",registry="shared",result="hit"} 2
ecrproxy_cache_requests_total{kind="blob",registry="shared",result="miss"} 2
ecrproxy_cache_requests_total{kind="manifest",registry="shared",result="hit"} 1
ecrproxy_cache_requests_total{kind="manifest",registry="shared",result="miss"} 1
# HELP ecrproxy_served_bytes_total Bytes of manifests and blobs written to clients, by registry, kind and source: the cache (hits) or ECR (misses).
# TYPE ecrproxy_served_bytes_total counter
ecrproxy_served_bytes_total{kind="blob",registry="shared",source="cache"} 3000
ecrproxy_served_bytes_total{kind="blob",registry="shared",source="upstream"} 3000
ecrproxy_served_bytes_total{kind="manifest",registry="shared",source="cache"} 500
ecrproxy_served_bytes_total{kind="manifest",registry="shared",source="upstream"} 500
`,
	}, {
		name: "unknown kinds are dropped, empty bodies count as requests",
		in: []served{
			{"tags", true, 10}, {"sha256:abc", false, 10}, {"", true, 10},
			{KindBlob, true, 0}, {KindBlob, true, -1},
		},
		want: `# HELP ecrproxy_cache_requests_total Successful manifest and blob GETs answered, by registry, kind and whether they were served from the cache (hit) or fetched from ECR (miss).
# TYPE ecrproxy_cache_requests_total counter
ecrproxy_cache_requests_total{kind="blob",registry="shared",result="hit"} 2
ecrproxy_cache_requests_total{kind="blob",registry="shared",result="miss"} 0
ecrproxy_cache_requests_total{kind="manifest",registry="shared",result="hit"} 0
ecrproxy_cache_requests_total{kind="manifest",registry="shared",result="miss"} 0
# HELP ecrproxy_served_bytes_total Bytes of manifests and blobs written to clients, by registry, kind and source: the cache (hits) or ECR (misses).
# TYPE ecrproxy_served_bytes_total counter
ecrproxy_served_bytes_total{kind="blob",registry="shared",source="cache"} 0
ecrproxy_served_bytes_total{kind="blob",registry="shared",source="upstream"} 0
ecrproxy_served_bytes_total{kind="manifest",registry="shared",source="cache"} 0
ecrproxy_served_bytes_total{kind="manifest",registry="shared",source="upstream"} 0
`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, reg := testRecorder(t, 0)
			m := (&Metrics{rec: r}).ForRegistry("shared")
			for _, s := range tc.in {
				m.ObserveServed(s.kind, s.hit, s.bytes)
			}
			got := exposition(t, reg, "ecrproxy_cache_requests_total", "ecrproxy_served_bytes_total")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("exposition (-want +got):\n%s", diff)
			}
		})
	}
}

// TestObserveServedByRegistry: each registry's Metrics counts under its
// own registry label, and ForRegistry creates its series at zero.
func TestObserveServedByRegistry(t *testing.T) {
	t.Parallel()
	r, reg := testRecorder(t, 0)
	m := &Metrics{rec: r}
	shared, prod := m.ForRegistry("shared"), m.ForRegistry("prod")
	shared.ObserveServed(KindBlob, true, 100)
	prod.ObserveServed(KindBlob, false, 7)
	prod.ObserveServed(KindManifest, true, 3)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ecrproxy_cache_requests_total", []string{"kind", KindBlob, "registry", "shared", "result", resultHit}, 1},
		{"ecrproxy_cache_requests_total", []string{"kind", KindBlob, "registry", "shared", "result", resultMiss}, 0},
		{"ecrproxy_cache_requests_total", []string{"kind", KindBlob, "registry", "prod", "result", resultMiss}, 1},
		{"ecrproxy_cache_requests_total", []string{"kind", KindManifest, "registry", "prod", "result", resultHit}, 1},
		{"ecrproxy_cache_requests_total", []string{"kind", KindManifest, "registry", "shared", "result", resultHit}, 0},
		{"ecrproxy_served_bytes_total", []string{"kind", KindBlob, "registry", "shared", "source", sourceCache}, 100},
		{"ecrproxy_served_bytes_total", []string{"kind", KindBlob, "registry", "prod", "source", sourceUp}, 7},
		{"ecrproxy_served_bytes_total", []string{"kind", KindManifest, "registry", "prod", "source", sourceCache}, 3},
		{"ecrproxy_served_bytes_total", []string{"kind", KindBlob, "registry", "shared", "source", sourceUp}, 0},
	} {
		got, ok := value(t, reg, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}
