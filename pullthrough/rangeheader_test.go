package pullthrough

import (
	"errors"
	"testing"
)

func TestParseRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header  string
		size    int64
		want    byteRange
		ok      bool
		unsatis bool
	}{
		{"", 100, byteRange{}, false, false},
		{"bytes=0-9", 100, byteRange{0, 9}, true, false},
		{"bytes=10-", 100, byteRange{10, 99}, true, false},
		{"bytes=90-200", 100, byteRange{90, 99}, true, false},
		{"bytes=-10", 100, byteRange{90, 99}, true, false},
		{"bytes=-200", 100, byteRange{0, 99}, true, false},
		{"bytes=100-", 100, byteRange{}, false, true},
		{"bytes=-0", 100, byteRange{}, false, true},
		{"bytes=5-4", 100, byteRange{}, false, false},
		{"bytes=0-1,5-6", 100, byteRange{}, false, false},
		{"items=0-1", 100, byteRange{}, false, false},
		{"bytes=a-b", 100, byteRange{}, false, false},
		{"bytes=-", 100, byteRange{}, false, false},
		{"bytes=0-0", 0, byteRange{}, false, true},
		{"bytes=0-9", -1, byteRange{}, false, false},
	}
	for _, tt := range tests {
		got, ok, err := parseRange(tt.header, tt.size)
		if got != tt.want || ok != tt.ok || errors.Is(err, errUnsatisfiable) != tt.unsatis {
			t.Errorf("parseRange(%q, %d) = %v, %v, %v; want %v, %v, unsatisfiable=%v", tt.header, tt.size, got, ok, err, tt.want, tt.ok, tt.unsatis)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=-5", "bytes=5-", "bytes=0-1,2-3", "bytes= 1 - 2 "} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		r, ok, err := parseRange(header, size)
		if ok && err != nil {
			t.Fatalf("ok with error %v", err)
		}
		if ok && (r.start < 0 || r.end < r.start || r.end >= size) {
			t.Fatalf("parseRange(%q, %d) = %v outside the blob", header, size, r)
		}
	})
}
