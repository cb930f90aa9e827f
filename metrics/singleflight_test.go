package metrics

import "testing"

func TestSingleflightObserver(t *testing.T) {
	t.Parallel()
	r, reg := testRecorder(t, 0)
	// Three clients pull one cold blob: the first starts the fetch, the
	// other two join it; then the first leaves.
	r.sfFetches.Inc()
	r.waitersChanged(1)
	r.waitersChanged(1)
	r.waitersChanged(1)
	r.waitersChanged(-1)

	for name, want := range map[string]float64{
		"ecrproxy_singleflight_waiters":        2,
		"ecrproxy_singleflight_requests_total": 3,
		"ecrproxy_singleflight_fetches_total":  1,
	} {
		if got, ok := value(t, reg, name); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	r.waitersChanged(-1)
	r.waitersChanged(-1)
	if got, _ := value(t, reg, "ecrproxy_singleflight_waiters"); got != 0 {
		t.Errorf("waiters after all left = %v, want 0", got)
	}
}
