package ecrtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RandomImage returns an image of layers layers, each a gzipped tar holding
// one file of layerSize random (incompressible) bytes, stored without
// compression so the blob is only slightly larger than layerSize. The
// manifest is OCI (types.OCIManifestSchema1) unless mediaType says
// types.DockerManifestSchema2.
func RandomImage(layers int, layerSize int64, mediaType ...types.MediaType) (v1.Image, error) {
	return randomImage(layers, layerSize, "amd64", "", mediaType...)
}

func randomImage(layers int, layerSize int64, arch, variant string, mediaType ...types.MediaType) (v1.Image, error) {
	mt := types.OCIManifestSchema1
	if len(mediaType) > 0 {
		mt = mediaType[0]
	}
	var configMT, layerMT types.MediaType
	switch mt {
	case types.OCIManifestSchema1:
		configMT, layerMT = types.OCIConfigJSON, types.OCILayer
	case types.DockerManifestSchema2:
		configMT, layerMT = types.DockerConfigJSON, types.DockerLayer
	default:
		return nil, fmt.Errorf("%w: unsupported manifest media type %q", ErrBadConfig, mt)
	}
	if layers < 0 || layerSize < 0 {
		return nil, fmt.Errorf("%w: negative layer count or size", ErrBadConfig)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), configMT)
	adds := make([]mutate.Addendum, 0, layers)
	for i := range layers {
		l, err := randomLayer(layerSize, layerMT, i)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: layerMT})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("appending layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = "linux", arch, variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting platform: %w", err)
	}
	return img, nil
}

// randomLayer builds a stored (uncompressed) gzip of a tar with one random file.
func randomLayer(size int64, mt types.MediaType, i int) (v1.Layer, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	if err != nil {
		return nil, fmt.Errorf("creating gzip writer: %w", err)
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("random-%d.bin", i), Size: size, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		return nil, fmt.Errorf("writing tar header: %w", err)
	}
	if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
		return nil, fmt.Errorf("writing random bytes: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("closing gzip: %w", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(mt))
	if err != nil {
		return nil, fmt.Errorf("creating layer: %w", err)
	}
	return l, nil
}

var indexPlatforms = []struct{ arch, variant string }{
	{"amd64", ""}, {"arm64", ""}, {"arm", "v7"}, {"ppc64le", ""}, {"s390x", ""}, {"386", ""}, {"riscv64", ""}, {"arm", "v6"},
}

// RandomIndex returns an OCI image index of platforms linux images (amd64,
// arm64, arm/v7, …; at most 8), each built like RandomImage.
func RandomIndex(platforms int, layers int, layerSize int64) (v1.ImageIndex, error) {
	if platforms < 0 || platforms > len(indexPlatforms) {
		return nil, fmt.Errorf("%w: platforms must be 0..%d", ErrBadConfig, len(indexPlatforms))
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	adds := make([]mutate.IndexAddendum, 0, platforms)
	for _, p := range indexPlatforms[:platforms] {
		img, err := randomImage(layers, layerSize, p.arch, p.variant)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: "linux", Architecture: p.arch, Variant: p.variant},
			},
		})
	}
	return mutate.AppendManifests(idx, adds...), nil
}
