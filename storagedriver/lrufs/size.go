package lrufs

import (
	"fmt"
	"math"
	"strings"
)

// ParseSize parses a size the way nginx's max_size does: a non-negative
// decimal integer of bytes, optionally followed by one of the suffixes k, m, g
// or t (case-insensitive, powers of 1024). Surrounding white space is ignored.
// "75g" is 75 GiB, "512m" 512 MiB, "10240k" 10 MiB and "4096" 4096 bytes.
//
// It returns an error wrapping ErrInvalidSize for anything else, including
// signs, fractions, other suffixes and values that overflow an int64.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("%w %q: empty", ErrInvalidSize, s)
	}
	shift := 0
	switch t[len(t)-1] {
	case 'k', 'K':
		shift = 10
	case 'm', 'M':
		shift = 20
	case 'g', 'G':
		shift = 30
	case 't', 'T':
		shift = 40
	}
	if shift != 0 {
		t = t[:len(t)-1]
	}
	if t == "" {
		return 0, fmt.Errorf("%w %q: no digits", ErrInvalidSize, s)
	}
	var n int64
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w %q: want digits followed by an optional k, m, g or t", ErrInvalidSize, s)
		}
		if n > (math.MaxInt64-int64(c-'0'))/10 {
			return 0, fmt.Errorf("%w %q: too large", ErrInvalidSize, s)
		}
		n = n*10 + int64(c-'0')
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%w %q: too large", ErrInvalidSize, s)
	}
	return n << shift, nil
}
