package counting

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func TestBodyCounts(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 10_000)
	var reported int64
	calls := 0
	b := NewBody(io.NopCloser(iotest.HalfReader(bytes.NewReader(data))), func(n int64) {
		reported += n
		calls++
	})
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, want the %d given", len(got), len(data))
	}
	if b.N() != int64(len(data)) || reported != int64(len(data)) {
		t.Errorf("N() = %d, reported %d; want %d", b.N(), reported, len(data))
	}
	if calls < 2 {
		t.Errorf("reported in %d calls; the half reader needs several reads", calls)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestBodyWithoutReport(t *testing.T) {
	b := NewBody(io.NopCloser(iotest.ErrReader(io.ErrUnexpectedEOF)), nil)
	if _, err := io.ReadAll(b); err != io.ErrUnexpectedEOF { //nolint:errorlint // ReadAll returns the reader's error as is
		t.Errorf("error %v, want the body's", err)
	}
	if b.N() != 0 {
		t.Errorf("N() = %d after a failed read, want 0", b.N())
	}
}
