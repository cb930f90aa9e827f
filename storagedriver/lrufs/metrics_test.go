package lrufs

import (
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/prometheus/client_golang/prometheus"
)

// cacheMetrics returns the names of the ecrproxy_cache_* series g holds.
func cacheMetrics(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "ecrproxy_cache_") {
			names = append(names, mf.GetName())
		}
	}
	return names
}

// TestMetricsGoToTheInjectedRegistry: New and FromParameters register the
// Driver's metrics with the registerer they are given, and never with the
// default registry; two Drivers on one registry share the counters.
// Before, New registered with prometheus.DefaultRegisterer, once per
// process, and the gauges followed whichever Driver was created last.
func TestMetricsGoToTheInjectedRegistry(t *testing.T) {
	if _, err := New(Parameters{RootDirectory: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if got := cacheMetrics(t, prometheus.DefaultGatherer); len(got) != 0 {
		t.Fatalf("New registered %v with the default registry", got)
	}

	reg := prometheus.NewRegistry()
	root := t.TempDir()
	storage := configuration.Storage{DriverName: configuration.Parameters{"rootdirectory": root, "maxsize": "1m"}}
	UseRegisterer(storage, reg)
	d, err := FromParameters(storage.Parameters())
	if err != nil {
		t.Fatal(err)
	}
	if got := cacheMetrics(t, reg); len(got) != 7 {
		t.Errorf("FromParameters registered %v, want the seven ecrproxy_cache_* metrics", got)
	}
	if got := cacheMetrics(t, prometheus.DefaultGatherer); len(got) != 0 {
		t.Errorf("FromParameters registered %v with the default registry", got)
	}
	second, err := New(Parameters{RootDirectory: t.TempDir(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if d.idx.metrics.blobReads != second.idx.metrics.blobReads {
		t.Error("a second Driver on the same registry does not share its counters")
	}

	if _, err := FromParameters(map[string]any{"rootdirectory": root, RegistererParameter: "default"}); err == nil {
		t.Errorf("FromParameters accepted a %s that is not a prometheus.Registerer", RegistererParameter)
	}
	other := configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": root}}
	UseRegisterer(other, reg)
	if _, ok := other.Parameters()[RegistererParameter]; ok {
		t.Error("UseRegisterer changed the parameters of another driver")
	}
	bare := configuration.Storage{DriverName: nil, "delete": configuration.Parameters{"enabled": true}}
	UseRegisterer(bare, reg)
	if bare.Parameters()[RegistererParameter] != reg {
		t.Error("UseRegisterer did not set the registerer of a driver configured without parameters")
	}
}
