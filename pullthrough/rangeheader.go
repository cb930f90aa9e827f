package pullthrough

import (
	"errors"
	"strconv"
	"strings"
)

// errUnsatisfiable is a Range that selects no byte of the blob.
var errUnsatisfiable = errors.New("range not satisfiable")

// byteRange is an inclusive range of byte offsets.
type byteRange struct{ start, end int64 }

// parseRange reads a Range header for a blob of size bytes. It returns
// ok=false when the blob should be served whole: no header, a header that
// is not a single byte range (invalid syntax is ignored, as RFC 9110
// allows; several ranges are served whole rather than as multipart). It
// returns errUnsatisfiable for a valid range outside the blob.
func parseRange(header string, size int64) (r byteRange, ok bool, err error) {
	spec, found := strings.CutPrefix(strings.TrimSpace(header), "bytes=")
	if !found || strings.Contains(spec, ",") || size < 0 {
		return byteRange{}, false, nil
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return byteRange{}, false, nil
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	switch {
	case first == "" && last == "":
		return byteRange{}, false, nil
	case first == "": // suffix: the last N bytes
		n, perr := strconv.ParseInt(last, 10, 64)
		if perr != nil || n < 0 {
			return byteRange{}, false, nil
		}
		if n == 0 || size == 0 {
			return byteRange{}, false, errUnsatisfiable
		}
		return byteRange{start: max(size-n, 0), end: size - 1}, true, nil
	}
	start, perr := strconv.ParseInt(first, 10, 64)
	if perr != nil || start < 0 {
		return byteRange{}, false, nil
	}
	end := size - 1
	if last != "" {
		e, perr := strconv.ParseInt(last, 10, 64)
		if perr != nil || e < start {
			return byteRange{}, false, nil
		}
		end = min(e, size-1)
	}
	if start >= size {
		return byteRange{}, false, errUnsatisfiable
	}
	return byteRange{start: start, end: end}, true, nil
}
