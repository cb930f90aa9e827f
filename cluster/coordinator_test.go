package cluster_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ecr-proxy/ecr-proxy/cluster"
	"github.com/ecr-proxy/ecr-proxy/internal/enginetest"
	"github.com/ecr-proxy/ecr-proxy/pullthrough"
)

func client(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func coordinator(t *testing.T, rdb redis.UniversalClient, url string) *cluster.Coordinator {
	t.Helper()
	c, err := cluster.New(rdb, cluster.WithPrefix("test"))
	if err != nil {
		t.Fatal(err)
	}
	if url != "" {
		c.SetAdvertise(url)
	}
	return c
}

// TestClaim: the first replica owns a download until it releases it;
// the others are told who does.
func TestClaim(t *testing.T) {
	rdb := client(t, enginetest.StartRedis(t).Addr())
	a := coordinator(t, rdb, "http://10.0.0.1:5000")
	b := coordinator(t, rdb, "http://10.0.0.2:5000")
	ctx := t.Context()
	if _, mine := a.Claim(ctx, "team/app@sha256:1"); !mine {
		t.Fatal("first claim is not mine")
	}
	if _, mine := a.Claim(ctx, "team/app@sha256:1"); !mine {
		t.Error("the owner's second claim is not its own")
	}
	owner, mine := b.Claim(ctx, "team/app@sha256:1")
	if mine || !strings.HasPrefix(owner, "http://10.0.0.1:5000 ") {
		t.Errorf("second replica: owner %q, mine %v; want the first replica's address", owner, mine)
	}
	a.Release("team/app@sha256:1")
	if _, mine := b.Claim(ctx, "team/app@sha256:1"); !mine {
		t.Error("after the owner's release the download is not free to claim")
	}
}

// TestForward: the owner gets the client's Authorization and Range and the
// forwarded mark, and its answer reaches the client; an owner that does
// not answer loses its claim.
func TestForward(t *testing.T) {
	rdb := client(t, enginetest.StartRedis(t).Addr())
	var got http.Header
	var trusted bool
	var a *cluster.Coordinator
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		trusted = a.Forwarded(r)
		w.Header().Set("Docker-Content-Digest", "sha256:1")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "bytes")
	}))
	t.Cleanup(owner.Close)
	a = coordinator(t, rdb, owner.URL)
	b := coordinator(t, rdb, "http://10.0.0.2:5000")
	ctx := t.Context()
	a.Claim(ctx, "team/app@sha256:1")
	who, _ := b.Claim(ctx, "team/app@sha256:1")

	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v2/team/app/blobs/sha256:1", nil)
	req.Header.Set("Authorization", "Basic dXNlcjpwdw==")
	req.Header.Set("Range", "bytes=0-4")
	rec := httptest.NewRecorder()
	if err := b.Forward(ctx, rec, req, "team/app@sha256:1", who); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusPartialContent || rec.Body.String() != "bytes" || rec.Header().Get("Docker-Content-Digest") != "sha256:1" {
		t.Errorf("forwarded answer %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	for k, want := range map[string]string{"Authorization": "Basic dXNlcjpwdw==", "Range": "bytes=0-4"} {
		if got.Get(k) != want {
			t.Errorf("owner got %s %q, want %q", k, got.Get(k), want)
		}
	}
	if !trusted {
		t.Error("the owner does not trust the forwarded mark of its peer")
	}

	owner.Close() // the owner dies
	err := b.Forward(ctx, httptest.NewRecorder(), req, "team/app@sha256:1", who)
	if !errors.Is(err, pullthrough.ErrOwnerGone) {
		t.Fatalf("forward to a dead owner: %v, want ErrOwnerGone", err)
	}
	if _, mine := b.Claim(ctx, "team/app@sha256:1"); !mine {
		t.Error("the dead owner's claim was not dropped")
	}
}

// TestLearnsItsAddress: without an advertised URL the coordinator claims
// with the local address of the request's connection.
func TestLearnsItsAddress(t *testing.T) {
	rdb := client(t, enginetest.StartRedis(t).Addr())
	a := coordinator(t, rdb, "")
	b := coordinator(t, rdb, "http://10.0.0.2:5000")
	ctx := context.WithValue(t.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7), Port: 5123})
	if _, mine := a.Claim(ctx, "k"); !mine {
		t.Fatal("first claim is not mine")
	}
	if owner, _ := b.Claim(t.Context(), "k"); !strings.HasPrefix(owner, "http://127.0.0.7:5123 ") {
		t.Errorf("owner %q, want the connection's local address", owner)
	}
}

// TestRedisDown: every claim is this replica's (its own single flight),
// and Health says why.
func TestRedisDown(t *testing.T) {
	srv := enginetest.StartRedis(t)
	rdb := client(t, srv.Addr())
	a := coordinator(t, rdb, "http://10.0.0.1:5000")
	b := coordinator(t, rdb, "http://10.0.0.2:5000")
	a.Claim(t.Context(), "k")
	srv.Stop()
	if _, mine := b.Claim(t.Context(), "k"); !mine {
		t.Error("with Redis down, a claim is not this replica's")
	}
	if b.Health() == nil {
		t.Error("Health is nil with Redis down")
	}
	if b.TagChecked(t.Context(), "team/app:1.0") {
		t.Error("a tag counts as checked with Redis down")
	}
}

// TestLeaseRenewedThenLapses: a claim renewed while bytes arrive outlives
// its deadline many times over; once the owner stops renewing (it died
// without anyone noticing), the claim lapses after its deadline and
// another replica takes the download over.
func TestLeaseRenewedThenLapses(t *testing.T) {
	rdb := client(t, enginetest.StartRedis(t).Addr())
	const ttl = time.Second
	newC := func(url string) *cluster.Coordinator {
		c, err := cluster.New(rdb, cluster.WithPrefix("test"), cluster.WithLeaseTTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		c.SetAdvertise(url)
		return c
	}
	a, b := newC("http://10.0.0.1:5000"), newC("http://10.0.0.2:5000")
	const key = "team/app@sha256:1"
	if _, mine := a.Claim(t.Context(), key); !mine {
		t.Fatal("first claim is not mine")
	}
	// Bytes arrive every 20 ms for three deadlines: a renews as they do.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); <-tick.C {
		a.Renew(key)
		if owner, mine := b.Claim(t.Context(), key); mine || !strings.HasPrefix(owner, "http://10.0.0.1:5000 ") {
			t.Fatalf("while the owner renews: another replica got owner %q, mine %v; want the owner's claim kept", owner, mine)
		}
	}
	// The owner stops (killed): its claim lapses within about a deadline.
	stopped := time.Now()
	for {
		if _, mine := b.Claim(t.Context(), key); mine {
			break
		}
		if time.Since(stopped) > 10*ttl {
			t.Fatal("the claim of an owner that stopped renewing never lapsed")
		}
		<-tick.C
	}
	if waited := time.Since(stopped); waited < ttl/3 {
		t.Errorf("the claim lapsed %v after the owner's last renewal, before its deadline of %v", waited, ttl)
	}
}

// TestForwardedNeedsSecret: only the cluster's secret, which the
// replicas share through Redis, marks a request as forwarded; a client
// that sends the header itself (any value, or a peer's secret of another
// cluster) is handled as a client.
func TestForwardedNeedsSecret(t *testing.T) {
	rdb := client(t, enginetest.StartRedis(t).Addr())
	a := coordinator(t, rdb, "http://10.0.0.1:5000")
	b := coordinator(t, rdb, "http://10.0.0.2:5000")
	other, err := cluster.New(rdb, cluster.WithPrefix("another-cache"))
	if err != nil {
		t.Fatal(err)
	}
	other.SetAdvertise("http://10.0.0.3:5000")
	ctx := t.Context()
	a.Claim(ctx, "k")
	// b's forward, as a's server receives it.
	var peer http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { peer = r.Header.Clone() }))
	t.Cleanup(srv.Close)
	fwd := func(c *cluster.Coordinator) string {
		t.Helper()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v2/team/app/blobs/sha256:1", nil)
		if err := c.Forward(ctx, httptest.NewRecorder(), req, "k", srv.URL+" token"); err != nil {
			t.Fatal(err)
		}
		return peer.Get(pullthrough.ForwardedHeader)
	}
	secret, foreign := fwd(b), fwd(other)
	if secret == "" || secret == "1" || secret == foreign {
		t.Fatalf("forwarded mark %q (another cluster's %q): want the cluster's own secret", secret, foreign)
	}
	for _, tc := range []struct {
		value string
		want  bool
	}{{"", false}, {"1", false}, {"true", false}, {secret[:len(secret)-1], false}, {secret + "0", false}, {foreign, false}, {secret, true}} {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v2/team/app/blobs/sha256:1", nil)
		if tc.value != "" {
			req.Header.Set(pullthrough.ForwardedHeader, tc.value)
		}
		if got := a.Forwarded(req); got != tc.want {
			t.Errorf("%s %q: forwarded %v, want %v", pullthrough.ForwardedHeader, tc.value, got, tc.want)
		}
	}
	// A replica started later reads the same secret.
	if c := coordinator(t, rdb, "http://10.0.0.4:5000"); !c.Forwarded(&http.Request{Header: http.Header{pullthrough.ForwardedHeader: {secret}}}) {
		t.Error("a replica started later does not trust the cluster's secret")
	}
}

// TestForwardOverTLS: an owner that serves TLS with a certificate of a
// private CA is reached when that CA is given (WithRootCAs); with the
// system's CAs alone, the forward fails as the owner gone.
func TestForwardOverTLS(t *testing.T) {
	rdb := client(t, enginetest.StartRedis(t).Addr())
	owner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "bytes")
	}))
	owner.StartTLS() // on 127.0.0.1, with a certificate of httptest's own CA
	t.Cleanup(owner.Close)
	pool := x509.NewCertPool()
	pool.AddCert(owner.Certificate())
	ctx := t.Context()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v2/team/app/blobs/sha256:1", nil)

	system := coordinator(t, rdb, "https://10.0.0.2:5000")
	system.Claim(ctx, "k") // reads the forwarding secret
	if err := system.Forward(ctx, httptest.NewRecorder(), req, "k", owner.URL+" token"); !errors.Is(err, pullthrough.ErrOwnerGone) {
		t.Errorf("forward with the system's CAs to an owner of a private CA: %v, want ErrOwnerGone", err)
	}
	private, err := cluster.New(rdb, cluster.WithPrefix("test"), cluster.WithRootCAs(pool))
	if err != nil {
		t.Fatal(err)
	}
	private.SetAdvertise("https://10.0.0.3:5000")
	rec := httptest.NewRecorder()
	if err := private.Forward(ctx, rec, req, "k", owner.URL+" token"); err != nil {
		t.Fatalf("forward trusting the owner's CA: %v", err)
	}
	if rec.Code != http.StatusOK || rec.Body.String() != "bytes" {
		t.Errorf("forwarded answer %d %q", rec.Code, rec.Body.String())
	}
}
