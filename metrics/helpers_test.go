package metrics

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// testRecorder returns a recorder registered on a registry of its own,
// with a clock that advances by step on every reading.
func testRecorder(t *testing.T, step time.Duration) (*recorder, *prometheus.Registry) {
	t.Helper()
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newRecorder(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(step)
		return now
	})
	reg := prometheus.NewPedanticRegistry()
	if err := r.register(reg); err != nil {
		t.Fatalf("register: %v", err)
	}
	return r, reg
}

// exposition renders the named metric families of reg in the text format,
// as a scrape of /metrics shows them.
func exposition(t *testing.T, reg prometheus.Gatherer, names ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if len(names) > 0 && !slices.Contains(names, mf.GetName()) {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatalf("render %s: %v", mf.GetName(), err)
		}
	}
	return b.String()
}

// value returns the value of the one series of family name whose labels
// are exactly labels (name=value pairs), and whether it exists. For a
// histogram it is the sample count.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func sameLabels(got []*dto.LabelPair, want []string) bool {
	if len(got)*2 != len(want) {
		return false
	}
	for i, lp := range got {
		// Gather sorts label pairs by name; want is given in that order.
		if lp.GetName() != want[2*i] || lp.GetValue() != want[2*i+1] {
			return false
		}
	}
	return true
}
