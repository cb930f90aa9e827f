package main

import (
	"math"
	"slices"
	"sync"
)

// key names one figure of one system.
type key struct{ metric, system string }

// results holds one value per run for each metric and system, NaN where
// a run did not measure it, and a note where a figure is not available.
type results struct {
	runs int

	mu     sync.Mutex
	values map[key][]float64
	notes  map[key]string
	errs   []error
}

func newResults(runs int) *results {
	return &results{runs: runs, values: make(map[key][]float64), notes: make(map[key]string)}
}

// add records v for metric and system in run.
func (r *results) add(metric, system string, run int, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{metric, system}
	vs, ok := r.values[k]
	if !ok {
		vs = make([]float64, r.runs)
		for i := range vs {
			vs[i] = math.NaN()
		}
		r.values[k] = vs
	}
	vs[run] = v
}

// note records why metric is not available for system.
func (r *results) note(metric, system, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes[key{metric, system}] = why
}

// fail records an error that made a figure missing.
func (r *results) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

// failures returns the errors recorded so far.
func (r *results) failures() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// get returns the per-run values (nil if never measured) and the note.
func (r *results) get(metric, system string) ([]float64, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{metric, system}
	return r.values[k], r.notes[k]
}

// summary is the median, minimum and maximum of a set of values.
type summary struct {
	med, min, max float64
	n             int
}

// summarize ignores NaNs; n is 0 when nothing is left.
func summarize(vs []float64) summary {
	var ok []float64
	for _, v := range vs {
		if !math.IsNaN(v) {
			ok = append(ok, v)
		}
	}
	if len(ok) == 0 {
		return summary{}
	}
	slices.Sort(ok)
	return summary{med: median(ok), min: ok[0], max: ok[len(ok)-1], n: len(ok)}
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// values, which it sorts.
func percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	slices.Sort(values)
	rank := int(math.Ceil(p / 100 * float64(len(values))))
	return values[max(rank, 1)-1]
}

// ratios divides a by b run by run; runs missing either give NaN.
func ratios(a, b []float64) []float64 {
	if a == nil || b == nil {
		return nil
	}
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] / b[i]
		if b[i] == 0 {
			out[i] = math.NaN()
		}
	}
	return out
}
