package main

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"errors"
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

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// The end-to-end tests of the client-facing server's limits (issue 13.4)
// run the proxy with small limits, so that each takes seconds. Figures
// they log (t.Logf, "figure:") go into docs/operating.md, "Hostile
// conditions".

// clientConn is one connection to the proxy driven by hand, as a
// misbehaving or merely slow client would.
type clientConn struct {
	net.Conn
	br *bufio.Reader
}

// dialProxy opens a connection to the proxy, closed at cleanup.
func dialProxy(t *testing.T, p *proxytest.Proxy) (*clientConn, error) {
	t.Helper()
	c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(t.Context(), "tcp", p.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.Addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &clientConn{Conn: c, br: bufio.NewReader(c)}, nil
}

// reply is an answer read by get.
type reply struct {
	status int
	header http.Header
	close  bool // the proxy closes the connection after it
	body   string
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// get sends a GET for path and reads the whole answer, within 10 s.
func (c *clientConn) get(path string) (reply, error) {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return reply{}, err
	}
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: proxy\r\n\r\n", path); err != nil {
		return reply{}, fmt.Errorf("send GET %s: %w", path, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return reply{}, fmt.Errorf("GET %s: %w", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return reply{}, fmt.Errorf("GET %s: body: %w", path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, close: resp.Close, body: string(b)}, nil
}

// errStillOpen says the proxy kept a connection open past the limit.
var errStillOpen = errors.New("still open")

// awaitClose waits, at most limit, for the proxy to close the connection
// without sending anything more, and returns how long it took.
func (c *clientConn) awaitClose(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(limit)); err != nil {
		return 0, err
	}
	n, err := c.br.Read(make([]byte, 512))
	took := time.Since(start)
	switch {
	case n > 0:
		return took, fmt.Errorf("%d unexpected bytes", n)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return took, fmt.Errorf("%w after %v", errStillOpen, limit)
	}
	return took, nil // EOF or reset: closed
}

// tally gathers what many connections report concurrently: the longest
// duration, and failures, of which the first few are kept.
type tally struct {
	mu       sync.Mutex
	max      time.Duration
	failures int
	first    []string
}

func (m *tally) add(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.max = max(m.max, d)
}

func (m *tally) fail(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failures++
	if len(m.first) < 5 {
		m.first = append(m.first, fmt.Sprintf(format, args...))
	}
}

// report fails t with the failures gathered, out of n.
func (m *tally) report(t *testing.T, n int) {
	t.Helper()
	if m.failures > 0 {
		t.Errorf("%d of %d failed, first: %s", m.failures, n, strings.Join(m.first, "; "))
	}
}

// TestIdleConnectionsAreClosed: keep-alive connections that send nothing
// after their request are closed after http.idletimeout, instead of
// holding a descriptor each for ever.
func TestIdleConnectionsAreClosed(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	const idle = time.Second
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{HTTPExtra: []string{"idletimeout: 1s"}}})

	const conns = 1000
	var slowest tally
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := dialProxy(t, p)
			if err != nil {
				slowest.fail("connection %d: %v", i, err)
				return
			}
			r, err := c.get("/healthz")
			if err != nil || r.status != http.StatusOK || r.close {
				slowest.fail("connection %d: /healthz: %v %v, want 200 keeping the connection", i, r, err)
				return
			}
			took, err := c.awaitClose(idle + 5*time.Second)
			if err != nil {
				slowest.fail("connection %d, idle after its answer: %v", i, err)
				return
			}
			slowest.add(took)
		})
	}
	wg.Wait()
	slowest.report(t, conns)
	if slowest.max > idle+4*time.Second {
		t.Errorf("slowest idle connection closed after %v, want about %v", slowest.max, idle)
	}
	if !t.Failed() {
		t.Logf("figure: %d idle keep-alive connections, idletimeout %v: all closed, the last %v after its answer",
			conns, idle, slowest.max.Round(10*time.Millisecond))
	}
}

// TestStalledRequestBodiesAreCut: manifest PUTs whose body stops half
// way are cut after http.bodyidletimeout, and none is answered as if it
// had succeeded.
func TestStalledRequestBodiesAreCut(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	const bodyIdle = time.Second
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{HTTPExtra: []string{"bodyidletimeout: 1s"}}})

	const puts = 500
	var slowest tally
	var wg sync.WaitGroup
	for i := range puts {
		wg.Go(func() {
			c, err := dialProxy(t, p)
			if err != nil {
				slowest.fail("PUT %d: %v", i, err)
				return
			}
			// 100 of the 4096 bytes announced, then nothing.
			head := fmt.Sprintf("PUT /v2/team/app/manifests/stalled-%d HTTP/1.1\r\nHost: proxy\r\n"+
				"Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 4096\r\n\r\n", i)
			if _, err := io.WriteString(c, head+"{"+strings.Repeat(" ", 99)); err != nil {
				slowest.fail("PUT %d: %v", i, err)
				return
			}
			start := time.Now()
			if err := c.SetReadDeadline(start.Add(bodyIdle + 5*time.Second)); err != nil {
				slowest.fail("PUT %d: %v", i, err)
				return
			}
			resp, err := http.ReadResponse(c.br, nil)
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode < 300 {
					slowest.fail("PUT %d with a stalled body answered %s", i, resp.Status)
				}
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				slowest.fail("PUT %d with a stalled body: no answer and still open after %v", i, bodyIdle+5*time.Second)
				return
			}
			slowest.add(time.Since(start))
		})
	}
	wg.Wait()
	slowest.report(t, puts)
	if slowest.max > bodyIdle+4*time.Second {
		t.Errorf("slowest stalled PUT cut after %v, want about %v", slowest.max, bodyIdle)
	}
	if !t.Failed() {
		t.Logf("figure: %d manifest PUTs stalled mid-body, bodyidletimeout %v: all cut, none answered 2xx, the last after %v",
			puts, bodyIdle, slowest.max.Round(10*time.Millisecond))
	}
}

// trickle is a request body that arrives in small parts, one per tick:
// a slow but live client.
type trickle struct {
	data  []byte
	part  int
	every *time.Ticker
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	<-r.every.C
	n := copy(p[:min(len(p), r.part)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestSlowLiveUploadSucceeds: a blob upload whose body takes several
// times http.bodyidletimeout in all, but never pauses that long, goes
// through: the limit is on progress, not on the whole request.
func TestSlowLiveUploadSucceeds(t *testing.T) {
	emu := newPushEmulator(t)
	const bodyIdle = time.Second
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{HTTPExtra: []string{"bodyidletimeout: 1s"}}})

	data := make([]byte, 192<<10)
	_, _ = rand.Read(data)
	dgst := digest.FromBytes(data).String()
	u := uploader{t: t, client: &http.Client{}, base: p.URL()}
	loc := u.start("team/slow")

	const part, every = 16 << 10, 250 * time.Millisecond // 12 parts: 3 s in all
	tick := time.NewTicker(every)
	defer tick.Stop()
	body := &trickle{data: data, part: part, every: tick}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, withDigest(t, loc, dgst), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	start := time.Now()
	resp, err := u.client.Do(req)
	if err != nil {
		t.Fatalf("slow PUT: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("slow PUT: %s %s, want 201", resp.Status, b)
	}
	if took < 2*bodyIdle {
		t.Errorf("the upload took %v: not slow enough to show anything", took)
	}
	if s := directHead(t, emu, "team/slow", dgst); s != http.StatusOK {
		t.Errorf("HEAD of the uploaded blob at ECR: %d, want 200", s)
	}
	if !t.Failed() {
		t.Logf("figure: %d KiB uploaded in %d KiB parts every %v (%v in all), bodyidletimeout %v: 201",
			len(data)>>10, part>>10, every, took.Round(100*time.Millisecond), bodyIdle)
	}
}

// TestConnectionCap: past http.maxconnections, /healthz is still
// answered and other requests get a 503 at once; past the few spare
// connections kept for that, new connections are closed; and held
// connections keep working throughout.
func TestConnectionCap(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	const maxConns = 8
	const spareLife = 3 * time.Second // readheadertimeout, below 5 s
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{HTTPExtra: []string{
		fmt.Sprintf("maxconnections: %d", maxConns), "readheadertimeout: 3s", "idletimeout: 1m",
	}}})

	held := make([]*clientConn, maxConns)
	for i := range held {
		c, err := dialProxy(t, p)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := c.get("/healthz"); err != nil || r.status != http.StatusOK {
			t.Fatalf("held connection %d: /healthz: %v %v", i, r, err)
		}
		held[i] = c
	}

	// Past the cap: a registry request gets a 503 at once, and the
	// connection is closed after it.
	c, err := dialProxy(t, p)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.get("/v2/")
	if err != nil {
		t.Fatalf("GET /v2/ past the cap: %v", err)
	}
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !r.close ||
		!strings.Contains(r.body, "UNAVAILABLE") {
		t.Errorf("GET /v2/ past the cap: %d, Retry-After %q, close %v, %s; want 503 UNAVAILABLE with Retry-After, closing",
			r.status, r.header.Get("Retry-After"), r.close, r.body)
	}
	if _, err := c.awaitClose(5 * time.Second); err != nil {
		t.Errorf("connection past the cap after its 503: %v", err)
	}

	// /healthz is answered.
	c, err = dialProxy(t, p)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err = c.get("/healthz")
	healthzTook := time.Since(start)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("/healthz past the cap: %v %v, want 200", r, err)
	}

	// Past the spare connections too: refused, even for /healthz.
	spare := make([]*clientConn, spareConns)
	for i := range spare {
		if spare[i], err = dialProxy(t, p); err != nil {
			t.Fatal(err)
		}
	}
	c, err = dialProxy(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.get("/healthz"); err == nil {
		t.Errorf("past the cap and the %d spare connections, /healthz answered %v; want the connection closed", spareConns, r)
	}
	// The silent spare connections last at most spareLife; then
	// /healthz is answered again.
	for i, c := range spare {
		if _, err := c.awaitClose(spareLife + 5*time.Second); err != nil {
			t.Fatalf("silent spare connection %d: %v", i, err)
		}
	}
	c, err = dialProxy(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.get("/healthz"); err != nil || r.status != http.StatusOK {
		t.Errorf("/healthz once the spare connections expired: %v %v, want 200", r, err)
	}

	// The held connections were never disturbed.
	for i, c := range held {
		if r, err := c.get("/v2/"); err != nil || r.status != http.StatusOK {
			t.Errorf("held connection %d: GET /v2/: %v %v, want 200", i, r, err)
		}
	}
	if !t.Failed() {
		t.Logf("figure: %d connections held at maxconnections %d: /healthz answered in %v; other requests 503 at once; past %d more, closed at once",
			maxConns, maxConns, healthzTook.Round(100*time.Microsecond), spareConns)
	}
}

// TestBodyIdleTimeoutOverTLS: over TLS, with the limit set from the
// environment (HTTP_BODY_IDLE_TIMEOUT), a slow but live upload succeeds
// and a stalled one is cut without a success. The client would take
// HTTP/2, whose deadlines are a stream's rather than a connection's, if
// the proxy offered it (at present it does not).
func TestBodyIdleTimeoutOverTLS(t *testing.T) {
	emu := newPushEmulator(t)
	const bodyIdle = time.Second
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "proxy")
	_, port := startSeedProxy(t, func(port string) []string {
		return append(withoutKey(emu.Env(), "ECR"), "ECR="+emu.RegistryURL(), "PORT="+port,
			"ENABLE_SSL=true", "SSL_KEY="+key, "SSL_CERTIFICATE="+cert, "CACHE_DIR="+filepath.Join(dir, "cache"),
			"HTTP_BODY_IDLE_TIMEOUT=1")
	})
	tr := tlsClient(t, cert).Transport.(*http.Transport)
	tr.DisableKeepAlives = false
	client := &http.Client{Transport: tr}
	u := uploader{t: t, client: client, base: "https://127.0.0.1:" + port}

	// Slow but live.
	data := make([]byte, 96<<10)
	_, _ = rand.Read(data)
	dgst := digest.FromBytes(data).String()
	loc := u.start("team/slow")
	tick := time.NewTicker(250 * time.Millisecond) // 6 parts: 1.5 s in all
	defer tick.Stop()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, withDigest(t, loc, dgst), &trickle{data: data, part: 16 << 10, every: tick})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("slow PUT over TLS: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("slow PUT over TLS (%s): %s, want 201", resp.Proto, resp.Status)
	}

	// Stalled: 100 of 4096 bytes, then nothing. (A raw connection: Go's
	// client would wait for its request body before reporting the
	// connection closed.)
	c, err := tls.Dial("tcp", "127.0.0.1:"+port, tr.TLSClientConfig.Clone())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "PUT /v2/team/app/manifests/stalled HTTP/1.1\r\nHost: proxy\r\n"+
		"Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 4096\r\n\r\n{%s", strings.Repeat(" ", 99)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(bodyIdle + 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	switch {
	case err == nil:
		_ = resp.Body.Close()
		if resp.StatusCode < 300 {
			t.Errorf("stalled PUT over TLS answered %s", resp.Status)
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("stalled PUT over TLS: no answer and still open after %v", bodyIdle+5*time.Second)
	}
	if took := time.Since(start); took > bodyIdle+4*time.Second {
		t.Errorf("stalled PUT over TLS cut after %v, want about %v", took, bodyIdle)
	}
}
