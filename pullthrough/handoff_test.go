package pullthrough

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestStatHandsItsDownloadToServeBlob: distribution calls Stat, then
// ServeBlob, for one GET. When the download the Stat started has finished
// before ServeBlob comes, and the blob could not be cached (larger than
// the bound), ServeBlob serves the bytes of that download: no HEAD and no
// second GET to ECR.
func TestStatHandsItsDownloadToServeBlob(t *testing.T) {
	obs := &reasons{}
	r := newBoundedRig(t, 1<<20, WithObserver(obs))
	dgst, want := r.seed(t, "big", 2<<20)
	ctx := context.WithValue(t.Context(), "http.request.method", http.MethodGet) //nolint:staticcheck,revive // distribution's own string key
	ctx = context.WithValue(ctx, "http.request.id", "req-1")                     //nolint:staticcheck,revive // as above
	heads, gets := r.emu.Count(ecrtest.KindBlobHEAD), r.emu.Count(ecrtest.KindBlobGET)

	desc, err := r.blobs.Stat(ctx, dgst)
	if err != nil || desc.Size != int64(len(want)) {
		t.Fatalf("Stat = %v, %v; want size %d", desc, err, len(want))
	}
	waitDownloads(t, r) // the download is over before ServeBlob comes
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v2/team/app/blobs/"+dgst.String(), nil)
	rec := httptest.NewRecorder()
	if err := r.blobs.ServeBlob(ctx, rec, req, dgst); err != nil {
		t.Fatalf("ServeBlob: %v", err)
	}
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatalf("ServeBlob answered %d with %d bytes, want 200 with the blob's %d", rec.Code, rec.Body.Len(), len(want))
	}
	if h, g := r.emu.Count(ecrtest.KindBlobHEAD)-heads, r.emu.Count(ecrtest.KindBlobGET)-gets; h != 0 || g != 1 {
		t.Errorf("ECR blob HEADs %d, GETs %d; want 0 and 1", h, g)
	}
	if got := obs.list(); len(got) != 1 || got[0] != ReasonTooLarge {
		t.Errorf("uncached downloads = %v, want one too_large", got)
	}
	if files := spoolFiles(t, r.spool); len(files) != 0 {
		t.Errorf("spools left: %v", files)
	}
}

// leaves signals every client leaving a download.
type leaves struct {
	nopObserver
	ch chan struct{}
}

func (o *leaves) WaitersChanged(delta int) {
	if delta < 0 {
		o.ch <- struct{}{}
	}
}

// TestParkedPlaceIsGivenUpWhenTheRequestEnds: a Stat whose request ends
// without a ServeBlob (distribution failed in between) does not hold the
// download: its place is given up, the blob is cached, and no spool is
// left behind.
func TestParkedPlaceIsGivenUpWhenTheRequestEnds(t *testing.T) {
	obs := &leaves{ch: make(chan struct{}, 8)}
	r := newRig(t, WithObserver(obs))
	dgst, _ := r.seed(t, "app", 512<<10)
	reqCtx, end := context.WithCancel(t.Context())
	ctx := context.WithValue(reqCtx, "http.request.method", http.MethodGet) //nolint:staticcheck,revive // distribution's own string key
	ctx = context.WithValue(ctx, "http.request.id", "req-2")                //nolint:staticcheck,revive // as above
	if _, err := r.blobs.Stat(ctx, dgst); err != nil {
		t.Fatal(err)
	}
	r.p.mu.Lock()
	parked := len(r.p.parked)
	r.p.mu.Unlock()
	if parked != 1 {
		t.Fatalf("places parked after the Stat = %d, want 1", parked)
	}
	end() // the request is over; ServeBlob never came
	select {
	case <-obs.ch:
	case <-t.Context().Done():
		t.Fatal("the parked place was never given up")
	}
	r.p.mu.Lock()
	parked = len(r.p.parked)
	r.p.mu.Unlock()
	if parked != 0 {
		t.Errorf("places parked after the request ended = %d, want 0", parked)
	}
	waitDownloads(t, r)
	if !r.cached(t, dgst) {
		t.Error("the blob was not cached")
	}
	if files := spoolFiles(t, r.spool); len(files) != 0 {
		t.Errorf("spools left: %v", files)
	}
}

// TestTwoRepositoriesShareOneDownload: a layer two repositories (two
// registry prefixes, say) pull cold at the same moment is fetched from ECR
// once: the second joins the first's download after ECR's HEAD confirmed
// that its repository has the blob.
func TestTwoRepositoriesShareOneDownload(t *testing.T) {
	r := newRig(t)
	img, err := ecrtest.RandomImage(1, 1<<20, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"team/app:1", "team/other:1"} {
		if _, err := r.emu.Seed(t.Context(), ref, img); err != nil {
			t.Fatal(err)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	dgst := digest.Digest(ld.String())
	other, err := reference.WithName("team/other")
	if err != nil {
		t.Fatal(err)
	}
	second := &blobStore{p: r.p, local: r.ns, name: other}
	heads, gets := r.emu.Count(ecrtest.KindBlobHEAD), r.emu.Count(ecrtest.KindBlobGET)

	release := r.emu.StallBlobs(64 << 10) // the first download stays in flight
	defer release()
	first := r.get(t.Context(), t, dgst) // returns with the headers: the download runs
	defer first.Body.Close()

	ctx := context.WithValue(t.Context(), "http.request.method", http.MethodGet) //nolint:staticcheck,revive // distribution's own string key
	ctx = context.WithValue(ctx, "http.request.id", "req-other")                 //nolint:staticcheck,revive // as above
	if _, err := second.Stat(ctx, dgst); err != nil {
		t.Fatalf("Stat through the second repository: %v", err)
	}
	release()
	want, err := io.ReadAll(first.Body)
	if err != nil || digest.FromBytes(want) != dgst {
		t.Fatalf("first client: %d bytes, %v", len(want), err)
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v2/team/other/blobs/"+dgst.String(), nil)
	rec := httptest.NewRecorder()
	if err := second.ServeBlob(ctx, rec, req, dgst); err != nil {
		t.Fatalf("ServeBlob through the second repository: %v", err)
	}
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatalf("second client: %d with %d bytes, want 200 with %d", rec.Code, rec.Body.Len(), len(want))
	}
	if h, g := r.emu.Count(ecrtest.KindBlobHEAD)-heads, r.emu.Count(ecrtest.KindBlobGET)-gets; h != 1 || g != 1 {
		t.Errorf("ECR blob HEADs %d, GETs %d; want 1 (the second repository's confirmation) and 1", h, g)
	}
}
