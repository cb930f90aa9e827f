package lrufs

import (
	"context"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
)

func TestFromParametersImpl(t *testing.T) {
	t.Parallel()
	def := Parameters{RootDirectory: defaultRootDirectory, LowWater: 0.9, MaxThreads: 100}
	with := func(f func(*Parameters)) Parameters {
		p := def
		f(&p)
		return p
	}
	for _, tc := range []struct {
		name    string
		params  map[string]any
		want    Parameters
		wantErr []string // substrings of the error
	}{
		{name: "nil", params: nil, want: def},
		{name: "empty", params: map[string]any{}, want: def},
		{name: "rootdirectory", params: map[string]any{"rootdirectory": "/srv/cache"},
			want: with(func(p *Parameters) { p.RootDirectory = "/srv/cache" })},
		{name: "maxsize 75g", params: map[string]any{"maxsize": "75g"},
			want: with(func(p *Parameters) { p.MaxSize = 75 << 30 })},
		{name: "maxsize 512M", params: map[string]any{"maxsize": "512M"},
			want: with(func(p *Parameters) { p.MaxSize = 512 << 20 })},
		{name: "maxsize int from YAML", params: map[string]any{"maxsize": 1048576},
			want: with(func(p *Parameters) { p.MaxSize = 1 << 20 })},
		{name: "maxsize float from JSON", params: map[string]any{"maxsize": float64(4096)},
			want: with(func(p *Parameters) { p.MaxSize = 4096 })},
		{name: "maxsize 0 unbounded", params: map[string]any{"maxsize": "0"}, want: def},
		{name: "lowwater fraction", params: map[string]any{"lowwater": 0.75},
			want: with(func(p *Parameters) { p.LowWater = 0.75 })},
		{name: "lowwater fraction string", params: map[string]any{"lowwater": "0.5"},
			want: with(func(p *Parameters) { p.LowWater = 0.5 })},
		{name: "lowwater percent string", params: map[string]any{"lowwater": "80%"},
			want: with(func(p *Parameters) { p.LowWater = 0.8 })},
		{name: "lowwater percent int", params: map[string]any{"lowwater": 80},
			want: with(func(p *Parameters) { p.LowWater = 0.8 })},
		{name: "lowwater 1", params: map[string]any{"lowwater": 1},
			want: with(func(p *Parameters) { p.LowWater = 1 })},
		{name: "maxthreads", params: map[string]any{"maxthreads": 50},
			want: with(func(p *Parameters) { p.MaxThreads = 50 })},
		{name: "maxthreads raised to minimum", params: map[string]any{"maxthreads": "5"},
			want: with(func(p *Parameters) { p.MaxThreads = 25 })},
		{name: "all", params: map[string]any{"rootdirectory": "/r", "maxsize": "1t", "lowwater": "0.95", "maxthreads": uint64(200)},
			want: Parameters{RootDirectory: "/r", MaxSize: 1 << 40, LowWater: 0.95, MaxThreads: 200}},

		{name: "bad maxsize unit", params: map[string]any{"maxsize": "75x"}, wantErr: []string{"maxsize", `"75x"`}},
		{name: "bad maxsize fraction", params: map[string]any{"maxsize": "1.5g"}, wantErr: []string{"maxsize", `"1.5g"`}},
		{name: "bad maxsize negative", params: map[string]any{"maxsize": -1}, wantErr: []string{"maxsize", "-1"}},
		{name: "bad maxsize overflow", params: map[string]any{"maxsize": "9999999999t"}, wantErr: []string{"maxsize", "9999999999t"}},
		{name: "bad maxsize type", params: map[string]any{"maxsize": true}, wantErr: []string{"maxsize", "true"}},
		{name: "bad lowwater zero", params: map[string]any{"lowwater": 0}, wantErr: []string{"lowwater", "0"}},
		{name: "bad lowwater over 100", params: map[string]any{"lowwater": 101}, wantErr: []string{"lowwater", "101"}},
		{name: "bad lowwater percent", params: map[string]any{"lowwater": "150%"}, wantErr: []string{"lowwater", "150%"}},
		{name: "bad lowwater text", params: map[string]any{"lowwater": "most"}, wantErr: []string{"lowwater", "most"}},
		{name: "bad maxthreads", params: map[string]any{"maxthreads": "many"}, wantErr: []string{"maxthreads", "many"}},
		{name: "bad rootdirectory", params: map[string]any{"rootdirectory": ""}, wantErr: []string{"rootdirectory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := fromParametersImpl(tc.params)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("fromParametersImpl(%v) = %+v, want an error", tc.params, got)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("fromParametersImpl(%v): %v", tc.params, err)
			}
			if got.RootDirectory != tc.want.RootDirectory || got.MaxSize != tc.want.MaxSize ||
				got.LowWater != tc.want.LowWater || got.MaxThreads != tc.want.MaxThreads {
				t.Errorf("fromParametersImpl(%v) = %+v, want %+v", tc.params, got, tc.want)
			}
		})
	}
}

// TestFactory checks the registration used by distribution's configuration
// (storage: lrufilesystem: …) and that errors carry the driver's name.
func TestFactory(t *testing.T) {
	root := t.TempDir()
	d, err := factory.Create(context.Background(), DriverName, map[string]any{"rootdirectory": root, "maxsize": "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Name(); got != DriverName {
		t.Errorf("Name() = %q, want %q", got, DriverName)
	}
	if _, err := d.GetContent(context.Background(), "/missing"); !isNotFound(err) || !strings.Contains(err.Error(), DriverName) {
		t.Errorf("GetContent(missing) = %v, want a PathNotFoundError naming %s", err, DriverName)
	}
	if got := d.(*Driver).Stats().MaxSize; got != 1<<20 {
		t.Errorf("MaxSize %d, want 1 MiB", got)
	}
	_, err = factory.Create(context.Background(), DriverName, map[string]any{"maxsize": "lots"})
	if err == nil || !strings.Contains(err.Error(), "maxsize") || !strings.Contains(err.Error(), "lots") {
		t.Errorf("bad maxsize: err = %v, want it to name maxsize and lots", err)
	}
}
