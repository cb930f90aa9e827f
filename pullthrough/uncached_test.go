package pullthrough

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// reasons records the Observer's Uncached events.
type reasons struct {
	nopObserver
	mu  sync.Mutex
	got []string
}

func (o *reasons) Uncached(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, reason)
}

func (o *reasons) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.got...)
}

// spoolFiles lists the download spools left in dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, SpoolPattern))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestReservationComesBeforeTheSpool: a download reserves its room in
// the cache, evicting the least recently used blob, before the first
// byte of its spool is written; cached plus reserved bytes stay under
// maxsize; the reservation becomes the blob once it is cached.
func TestReservationComesBeforeTheSpool(t *testing.T) {
	const maxSize = 3 << 20
	r := newBoundedRig(t, maxSize)
	old, _ := r.seed(t, "old", 1<<20)
	mid, _ := r.seed(t, "mid", 1<<20)
	for _, d := range []digest.Digest{old, mid} {
		resp := r.get(t.Context(), t, d)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		waitDownloads(t, r)
	}
	dgst, want := r.seed(t, "new", 2<<20)
	release := r.emu.StallBlobs(0) // the response starts; no byte comes
	defer release()
	resp := r.get(t.Context(), t, dgst)
	defer resp.Body.Close()
	// The client has its headers: the download started, reserved and
	// created its spool, and has written nothing.
	if got := r.cache.Reserved(); got != int64(len(want)) {
		t.Errorf("reserved while the download waits for its first byte = %d, want %d", got, len(want))
	}
	if s := r.cache.Stats(); s.Bytes+r.cache.Reserved() > maxSize {
		t.Errorf("cached %d + reserved %d > maxsize %d", s.Bytes, r.cache.Reserved(), maxSize)
	}
	if r.cached(t, old) {
		t.Error("the least recently used blob was not evicted before the spool was written")
	}
	files := spoolFiles(t, r.spool)
	if len(files) != 1 {
		t.Fatalf("spools = %v, want one", files)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Size() != 0 {
		t.Fatalf("spool before the first byte: %v, %v", fi, err)
	}
	release()
	b, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("client got %d bytes, %v", len(b), err)
	}
	waitDownloads(t, r)
	if got := r.cache.Reserved(); got != 0 || !r.cached(t, dgst) {
		t.Errorf("after the download: reserved %d, cached %t; want 0 and cached", got, r.cached(t, dgst))
	}
	if s := r.cache.Stats(); s.Bytes > maxSize {
		t.Errorf("cached %d > maxsize %d", s.Bytes, maxSize)
	}
}

// TestTooLargeStreamsUncached: a blob larger than the cache's bound
// reaches every joined client, whole and ranged, from one upstream GET
// through memory: no spool is written, nothing is cached, the observer
// counts it once.
func TestTooLargeStreamsUncached(t *testing.T) {
	obs := &reasons{}
	r := newBoundedRig(t, 1<<20, WithObserver(obs))
	r.p.relayWindow = 256 << 10 // the clients move through a small window
	dgst, want := r.seed(t, "big", 3<<20)
	release := r.emu.StallBlobs(100 << 10)
	var wg sync.WaitGroup
	started := make(chan struct{}, 6)
	for i := range 6 {
		wg.Go(func() {
			lo, hi := 0, len(want)
			var resp *http.Response
			if i%3 == 2 {
				lo = len(want) - 300<<10
				resp = r.get(t.Context(), t, dgst, "Range", fmt.Sprintf("bytes=%d-", lo))
			} else {
				resp = r.get(t.Context(), t, dgst)
			}
			started <- struct{}{}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(b, want[lo:hi]) {
				t.Errorf("client %d: %d bytes of [%d, %d), %v", i, len(b), lo, hi, err)
			}
		})
	}
	for range 6 {
		<-started
	}
	if files := spoolFiles(t, r.spool); len(files) != 0 {
		t.Errorf("spools of a blob that cannot be cached: %v", files)
	}
	release()
	wg.Wait()
	waitDownloads(t, r)
	if n := r.emu.Count(ecrtest.KindBlobGET); n != 1 {
		t.Errorf("upstream blob GETs = %d, want 1", n)
	}
	if r.cached(t, dgst) {
		t.Error("a blob larger than maxsize was cached")
	}
	if got := obs.list(); len(got) != 1 || got[0] != ReasonTooLarge {
		t.Errorf("uncached events = %v, want one %q", got, ReasonTooLarge)
	}
	if got := r.cache.Reserved(); got != 0 {
		t.Errorf("reserved after the download = %d, want 0", got)
	}
}

// TestUncachedDropsAStalledClient: a client that stops reading an
// uncached download is cut off after the stall time, and the others
// still get their bytes.
func TestUncachedDropsAStalledClient(t *testing.T) {
	r := newBoundedRig(t, 1<<20, WithIdleTimeout(time.Second))
	r.p.relayWindow = 64 << 10
	dgst, want := r.seed(t, "big", 24<<20)
	release := r.emu.StallBlobs(10 << 10)
	stalled := getWithSmallBuffer(t, r.srv.URL+"/v2/team/app/blobs/"+dgst.String()) // reads nothing
	defer stalled.Body.Close()
	reader := r.get(t.Context(), t, dgst)
	defer reader.Body.Close()
	release()
	b, err := io.ReadAll(reader.Body)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("the reading client got %d of %d bytes, %v", len(b), len(want), err)
	}
	if _, err := io.ReadAll(stalled.Body); err == nil {
		t.Error("the stalled client got a complete body; want it cut off")
	}
	waitDownloads(t, r)
}

// getWithSmallBuffer GETs url over a connection whose receive buffer is
// fixed at 64 KiB: a client that reads nothing then holds the sender
// back. With the kernel's autotuning (up to 32 MiB on loopback here) a
// client that reads nothing could still take a whole blob into its
// socket buffer.
func getWithSmallBuffer(t *testing.T, url string) *http.Response {
	t.Helper()
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			if err := tc.SetReadBuffer(64 << 10); err != nil {
				_ = c.Close()
				return nil, err
			}
		}
		return c, nil
	}}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func waitDownloads(t *testing.T, r *rig) {
	t.Helper()
	ctx, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	if err := r.p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLateClientOfAnUncachedDownload: a client that comes after an
// uncached download has let go of the blob's first bytes starts a
// download of its own; both clients get their bytes; the warning is
// logged once for the blob, each download is counted.
func TestLateClientOfAnUncachedDownload(t *testing.T) {
	obs := &reasons{}
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	r := newBoundedRig(t, 1<<20, WithObserver(obs), WithLogger(logger))
	r.p.relayWindow = 64 << 10
	dgst, want := r.seed(t, "big", 2<<20)
	release := r.emu.StallBlobs(1 << 20)
	defer release()
	first := r.get(t.Context(), t, dgst)
	defer first.Body.Close()
	got := make([]byte, 900<<10)
	if _, err := io.ReadFull(first.Body, got); err != nil || !bytes.Equal(got, want[:len(got)]) {
		t.Fatalf("first client: %v", err)
	}
	late := r.get(t.Context(), t, dgst)
	defer late.Body.Close()
	release()
	rest, err := io.ReadAll(first.Body)
	if err != nil || !bytes.Equal(append(got, rest...), want) {
		t.Errorf("first client: %d bytes, %v", len(got)+len(rest), err)
	}
	b, err := io.ReadAll(late.Body)
	if err != nil || !bytes.Equal(b, want) {
		t.Errorf("late client: %d bytes, %v", len(b), err)
	}
	waitDownloads(t, r)
	if n := r.emu.Count(ecrtest.KindBlobGET); n != 2 {
		t.Errorf("upstream blob GETs = %d, want 2", n)
	}
	if got := obs.list(); len(got) != 2 {
		t.Errorf("uncached events = %v, want two", got)
	}
	warned := 0
	for _, e := range hook.AllEntries() {
		if strings.HasPrefix(e.Message, "cannot cache blob") && e.Level == logrus.WarnLevel {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings for one blob, want 1", warned)
	}
}
