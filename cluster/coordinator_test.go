package cluster_test

import (
	"context"
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
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Docker-Content-Digest", "sha256:1")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "bytes")
	}))
	t.Cleanup(owner.Close)
	a := coordinator(t, rdb, owner.URL)
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
	for k, want := range map[string]string{"Authorization": "Basic dXNlcjpwdw==", "Range": "bytes=0-4", pullthrough.ForwardedHeader: "1"} {
		if got.Get(k) != want {
			t.Errorf("owner got %s %q, want %q", k, got.Get(k), want)
		}
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
