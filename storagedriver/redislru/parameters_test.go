package redislru

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFromOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		options map[string]any
		want    Parameters
		wantErr string
	}{
		{"maxsize only", map[string]any{"maxsize": "2g"}, Parameters{MaxSize: 2 << 30}, ""},
		{"everything", map[string]any{"maxsize": 1000, "lowwater": "80%", "prefix": "team", "touchinterval": "30s", "evictgrace": "0s"},
			Parameters{MaxSize: 1000, LowWater: 0.8, Prefix: "team", TouchInterval: 30 * time.Second, EvictGrace: -1}, ""},
		{"missing maxsize", map[string]any{}, Parameters{}, "option maxsize is required"},
		{"bad maxsize", map[string]any{"maxsize": "10x"}, Parameters{}, `option maxsize "10x"`},
		{"bad lowwater", map[string]any{"maxsize": "1g", "lowwater": "lots"}, Parameters{}, `option lowwater "lots"`},
		{"bad duration", map[string]any{"maxsize": "1g", "evictgrace": "soon"}, Parameters{}, `option evictgrace "soon"`},
		{"negative duration", map[string]any{"maxsize": "1g", "touchinterval": "-1s"}, Parameters{}, `option touchinterval "-1s"`},
		{"unknown option", map[string]any{"maxsize": "1g", "maxszie": "2g"}, Parameters{}, "unknown option maxszie"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromOptions(tc.options)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("FromOptions: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b func() time.Time) bool { return (a == nil) == (b == nil) })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
