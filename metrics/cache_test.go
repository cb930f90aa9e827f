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
		want: `# HELP ecrproxy_cache_requests_total Successful manifest and blob GETs answered, by kind and whether they were served from the cache (hit) or fetched from ECR (miss).
# TYPE ecrproxy_cache_requests_total counter
ecrproxy_cache_requests_total{kind="blob",result="hit"} 0
ecrproxy_cache_requests_total{kind="blob",result="miss"} 0
ecrproxy_cache_requests_total{kind="manifest",result="hit"} 0
ecrproxy_cache_requests_total{kind="manifest",result="miss"} 0
# HELP ecrproxy_served_bytes_total Bytes of manifests and blobs written to clients, by kind and by source: the cache (hits) or ECR (misses).
# TYPE ecrproxy_served_bytes_total counter
ecrproxy_served_bytes_total{kind="blob",source="cache"} 0
ecrproxy_served_bytes_total{kind="blob",source="upstream"} 0
ecrproxy_served_bytes_total{kind="manifest",source="cache"} 0
ecrproxy_served_bytes_total{kind="manifest",source="upstream"} 0
`,
	}, {
		name: "cold then warm pull",
		in: []served{
			{KindManifest, false, 500}, {KindBlob, false, 1000}, {KindBlob, false, 2000},
			{KindManifest, true, 500}, {KindBlob, true, 1000}, {KindBlob, true, 2000},
		},
		want: `# HELP ecrproxy_cache_requests_total Successful manifest and blob GETs answered, by kind and whether they were served from the cache (hit) or fetched from ECR (miss).
# TYPE ecrproxy_cache_requests_total counter
ecrproxy_cache_requests_total{kind="blob",result="hit"} 2
ecrproxy_cache_requests_total{kind="blob",result="miss"} 2
ecrproxy_cache_requests_total{kind="manifest",result="hit"} 1
ecrproxy_cache_requests_total{kind="manifest",result="miss"} 1
# HELP ecrproxy_served_bytes_total Bytes of manifests and blobs written to clients, by kind and by source: the cache (hits) or ECR (misses).
# TYPE ecrproxy_served_bytes_total counter
ecrproxy_served_bytes_total{kind="blob",source="cache"} 3000
ecrproxy_served_bytes_total{kind="blob",source="upstream"} 3000
ecrproxy_served_bytes_total{kind="manifest",source="cache"} 500
ecrproxy_served_bytes_total{kind="manifest",source="upstream"} 500
`,
	}, {
		name: "unknown kinds are dropped, empty bodies count as requests",
		in: []served{
			{"tags", true, 10}, {"sha256:abc", false, 10}, {"", true, 10},
			{KindBlob, true, 0}, {KindBlob, true, -1},
		},
		want: `# HELP ecrproxy_cache_requests_total Successful manifest and blob GETs answered, by kind and whether they were served from the cache (hit) or fetched from ECR (miss).
# TYPE ecrproxy_cache_requests_total counter
ecrproxy_cache_requests_total{kind="blob",result="hit"} 2
ecrproxy_cache_requests_total{kind="blob",result="miss"} 0
ecrproxy_cache_requests_total{kind="manifest",result="hit"} 0
ecrproxy_cache_requests_total{kind="manifest",result="miss"} 0
# HELP ecrproxy_served_bytes_total Bytes of manifests and blobs written to clients, by kind and by source: the cache (hits) or ECR (misses).
# TYPE ecrproxy_served_bytes_total counter
ecrproxy_served_bytes_total{kind="blob",source="cache"} 0
ecrproxy_served_bytes_total{kind="blob",source="upstream"} 0
ecrproxy_served_bytes_total{kind="manifest",source="cache"} 0
ecrproxy_served_bytes_total{kind="manifest",source="upstream"} 0
`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, reg := testRecorder(t, 0)
			for _, s := range tc.in {
				r.observeServed(s.kind, s.hit, s.bytes)
			}
			got := exposition(t, reg, "ecrproxy_cache_requests_total", "ecrproxy_served_bytes_total")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("exposition (-want +got):\n%s", diff)
			}
		})
	}
}
