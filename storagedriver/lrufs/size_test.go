package lrufs

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "4096", want: 4096},
		{in: "10240k", want: 10 << 20},
		{in: "10240K", want: 10 << 20},
		{in: "512m", want: 512 << 20},
		{in: "75g", want: 75 << 30},
		{in: "75G", want: 75 << 30},
		{in: "1t", want: 1 << 40},
		{in: " 2g\n", want: 2 << 30},
		{in: "9223372036854775807", want: 1<<63 - 1},
		{in: "8388607t", want: 8388607 << 40},
		{in: "", wantErr: true},
		{in: "g", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "+1", wantErr: true},
		{in: "1.5g", wantErr: true},
		{in: "1gb", wantErr: true},
		{in: "1gib", wantErr: true},
		{in: "1p", wantErr: true},
		{in: "1 g", wantErr: true},
		{in: "0x10", wantErr: true},
		{in: "9223372036854775808", wantErr: true},
		{in: "8388608t", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSize(tc.in)
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrInvalidSize) || !strings.Contains(err.Error(), strconv.Quote(tc.in)) {
					t.Errorf("ParseSize(%q) = %d, %v; want ErrInvalidSize naming the input", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

// FuzzParseSize checks that ParseSize never panics, accepts only
// non-negative values, agrees with strconv on plain numbers, and scales by
// 1024 per unit.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "75g", "512M", "10240k", "1t", "9223372036854775807", "8388608t", "-1", "1.5g", " 3k "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSize) {
				t.Fatalf("ParseSize(%q): error %v does not wrap ErrInvalidSize", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, n)
		}
		trimmed := strings.TrimSpace(s)
		if m, err := strconv.ParseInt(trimmed, 10, 64); err == nil && !strings.HasPrefix(trimmed, "+") && m != n {
			t.Fatalf("ParseSize(%q) = %d, strconv says %d", s, n, m)
		}
		if lower := strings.ToLower(trimmed); strings.HasSuffix(lower, "k") {
			base, err := ParseSize(trimmed[:len(trimmed)-1])
			if err != nil || base*1024 != n {
				t.Fatalf("ParseSize(%q) = %d, but its number parses to %d, %v", s, n, base, err)
			}
		}
	})
}
