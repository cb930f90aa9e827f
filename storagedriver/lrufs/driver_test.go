package lrufs

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"
)

// TestDriverSuite runs distribution's conformance suite against one Driver
// whose bound is far above what the suite writes. Run with -short in CI (the
// full mode writes a 5 GiB stream).
func TestDriverSuite(t *testing.T) {
	root := t.TempDir()
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) {
		return FromParameters(map[string]any{"rootdirectory": root, "maxsize": "64g"})
	}, false)
}

// BenchmarkDriver measures the wrapper's overhead over distribution's
// filesystem driver on the operations of testsuites.BenchDriver (PutContent +
// GetContent, Writer + Reader, List, Delete) at 0 B, 1 KiB and 1 MiB, plus the
// identical PutContent that distribution's proxy does for tag links.
// testsuites.BenchDriver itself cannot run in v3.1.2 with testify v1.12: its
// SetupSuite calls Require before SetT and panics.
func BenchmarkDriver(b *testing.B) {
	ctx := context.Background()
	for _, impl := range []struct {
		name string
		new  func(root string) (storagedriver.StorageDriver, error)
	}{
		{"filesystem", func(root string) (storagedriver.StorageDriver, error) {
			return filesystem.FromParameters(map[string]any{"rootdirectory": root})
		}},
		{DriverName, func(root string) (storagedriver.StorageDriver, error) {
			return FromParameters(map[string]any{"rootdirectory": root, "maxsize": "64g"})
		}},
	} {
		d, err := impl.new(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		for _, size := range []int{0, 1 << 10, 1 << 20} {
			content := blobContent(size, size)
			b.Run(fmt.Sprintf("%s/PutGet%dB", impl.name, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				i := 0
				for b.Loop() {
					p := fmt.Sprintf("/bench/putget/%d", i)
					i++
					if err := d.PutContent(ctx, p, content); err != nil {
						b.Fatal(err)
					}
					if _, err := d.GetContent(ctx, p); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				_ = d.Delete(ctx, "/bench")
			})
			b.Run(fmt.Sprintf("%s/Stream%dB", impl.name, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				i := 0
				for b.Loop() {
					p := fmt.Sprintf("/bench/stream/%d", i)
					i++
					w, err := d.Writer(ctx, p, false)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := w.Write(content); err != nil {
						b.Fatal(err)
					}
					if err := w.Commit(ctx); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
					rc, err := d.Reader(ctx, p, 0)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
				b.StopTimer()
				_ = d.Delete(ctx, "/bench")
			})
		}
		b.Run(impl.name+"/PutIdenticalLink", func(b *testing.B) {
			link := []byte("sha256:" + strings.Repeat("ab", 32))
			p := "/docker/registry/v2/repositories/r/_manifests/tags/latest/current/link"
			for b.Loop() {
				if err := d.PutContent(ctx, p, link); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_ = d.Delete(ctx, "/docker")
		})
		b.Run(impl.name+"/List50Delete50", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				for j := range 50 {
					if err := d.PutContent(ctx, fmt.Sprintf("/bench/list/%d", j), nil); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := d.List(ctx, "/bench/list"); err != nil {
					b.Fatal(err)
				}
				if err := d.Delete(ctx, "/bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
