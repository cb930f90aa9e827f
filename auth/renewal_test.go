package auth

import (
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// The tests in this file run the real emulator and AWS SDK inside a
// testing/synctest bubble, over the emulator's in-memory network, so that
// time is fake: time.Sleep moves the clock of the TokenSource, of the SDK
// and of the emulator's token expiry at once, and takes no real time.

// TestShortLivedTokenRenewedOnSchedule (issue 13, item 6): a token that
// lives less than the minimum validity asked of a token on demand (20 s
// against 5 min) was re-minted by every request. It is renewed on a
// schedule instead: by Run at half its lifetime, or, without Run, on
// demand once three quarters of it have passed; every request still goes
// out with a valid token.
func TestShortLivedTokenRenewedOnSchedule(t *testing.T) {
	const lifetime, span = 20 * time.Second, 2 * time.Minute
	emu := newEmulator(t, ecrtest.WithTokenLifetime(lifetime))
	dgst := seedBlob(t, emu, "team/app:1")
	for _, tt := range []struct {
		name           string
		run            bool
		minMint, mints int // mints during span, one request a second
	}{
		// Renewal at 0.9 to 1.0 of half the lifetime.
		{"with Run", true, int(span / (lifetime / 2)), int(span/(lifetime/2*9/10)) + 1},
		// On demand, at three quarters of the lifetime.
		{"on demand", false, int(span / (lifetime * 3 / 4)), int(span/(lifetime*3/4)) + 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := emu.InMemory()
				defer m.Close()
				e := newEmulated(t.Context(), t, emu, m.Transport())
				if tt.run {
					defer e.startRun(t.Context())()
				}
				if code, _ := e.do(t.Context(), t, http.MethodHead, "/v2/team/app/blobs/"+dgst); code != http.StatusOK {
					t.Fatalf("first HEAD = %d, want 200", code)
				}
				emu.ResetCounts()
				for i := range int(span / time.Second) {
					time.Sleep(time.Second)
					if code, _ := e.do(t.Context(), t, http.MethodHead, "/v2/team/app/blobs/"+dgst); code != http.StatusOK {
						t.Fatalf("HEAD %d = %d, want 200 (a valid token)", i, code)
					}
				}
				if n := e.mints(); n < tt.minMint || n > tt.mints {
					t.Errorf("%d mints in %v of one request a second with %v tokens, want %d to %d",
						n, span, lifetime, tt.minMint, tt.mints)
				}
				if n := emu.Count(ecrtest.KindBlobHEAD); n != int(span/time.Second) {
					t.Errorf("registry saw %d HEADs, want %d (no request refused and replayed)", n, span/time.Second)
				}
			})
		})
	}
}

// TestSkewedClockDoesNotCauseMintStorm: with the local clock ahead of
// ECR's by more than a token's lifetime, every token looks expired when it
// arrives. ECR still accepts it; the proxy must not mint for every request
// (nor Run in a loop): at most one mint per 5 s (minRenewPeriod).
func TestSkewedClockDoesNotCauseMintStorm(t *testing.T) {
	const span = time.Minute
	emu := newEmulator(t, ecrtest.WithTokenLifetime(30*time.Minute),
		ecrtest.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	dgst := seedBlob(t, emu, "team/app:1")
	for _, run := range []bool{false, true} {
		t.Run(map[bool]string{false: "on demand", true: "with Run"}[run], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := emu.InMemory()
				defer m.Close()
				e := newEmulated(t.Context(), t, emu, m.Transport())
				if run {
					defer e.startRun(t.Context())()
				}
				emu.ResetCounts()
				for i := range int(span / time.Second) {
					if code, _ := e.do(t.Context(), t, http.MethodHead, "/v2/team/app/blobs/"+dgst); code != http.StatusOK {
						t.Fatalf("HEAD %d = %d, want 200", i, code)
					}
					time.Sleep(time.Second)
				}
				if n, limit := e.mints(), int(span/(5*time.Second))+1; n > limit {
					t.Errorf("%d mints in %v, want at most %d", n, span, limit)
				}
			})
		})
	}
}

// TestRefusingRegistryBacksOffMints (issue 14, item 4): when ECR refuses
// a token it has just issued, minting another for each request (20
// requests gave 21 mints) only hammers GetAuthorizationToken. While the
// refusals go on, at most one mint per refusalBackoff; every client gets
// ECR's refusal at once (no waiting for the backoff), the log says what
// happens once, and the first request after ECR relents succeeds.
func TestRefusingRegistryBacksOffMints(t *testing.T) {
	emu := newEmulator(t)
	dgst := seedBlob(t, emu, "team/app:1")
	for _, tt := range []struct {
		name   string
		status int
		method string
	}{
		{"401 on GET", http.StatusUnauthorized, http.MethodGet},
		{"403 expired on GET", http.StatusForbidden, http.MethodGet},
		{"403 on HEAD", http.StatusForbidden, http.MethodHead},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := emu.InMemory()
				defer m.Close()
				logger, logs := logtest.NewNullLogger()
				e := newEmulated(t.Context(), t, emu, m.Transport(), WithLogger(logger))
				path := "/v2/team/app/blobs/" + dgst
				emu.ResetCounts()
				if code, _ := e.do(t.Context(), t, tt.method, path); code != http.StatusOK {
					t.Fatalf("first %s = %d, want 200", tt.method, code)
				}
				time.Sleep(time.Hour) // the token is not new any more
				emu.RefuseTokens(tt.status)
				defer emu.RefuseTokens(0)

				start := time.Now()
				for i := range 10 {
					if code, _ := e.do(t.Context(), t, tt.method, path); code != tt.status {
						t.Errorf("%s %d while ECR refuses = %d, want ECR's %d", tt.method, i, code, tt.status)
					}
				}
				var wg sync.WaitGroup
				for i := range 10 {
					wg.Go(func() {
						if code, _ := e.do(t.Context(), t, tt.method, path); code != tt.status {
							t.Errorf("concurrent %s %d while ECR refuses = %d, want ECR's %d", tt.method, i, code, tt.status)
						}
					})
				}
				wg.Wait()
				if d := time.Since(start); d != 0 {
					t.Errorf("the 20 refused requests took %v of fake time, want none: a refusal is answered at once", d)
				}
				if n := e.mints(); n > 2 {
					t.Errorf("%d mints for the first request and 20 refused ones, want at most 2", n)
				}
				var warnings []string
				for _, entry := range logs.AllEntries() {
					if entry.Level == logrus.WarnLevel {
						warnings = append(warnings, entry.Message)
					}
				}
				if len(warnings) != 1 {
					t.Errorf("warnings logged: %q, want 1", warnings)
				}

				time.Sleep(refusalBackoff)
				before := e.mints()
				for range 5 {
					e.do(t.Context(), t, tt.method, path)
				}
				if n := e.mints() - before; n != 1 {
					t.Errorf("%d mints for 5 requests once the backoff is over, want 1", n)
				}

				emu.RefuseTokens(0)
				if code, _ := e.do(t.Context(), t, tt.method, path); code != http.StatusOK {
					t.Errorf("%s once ECR accepts tokens again = %d, want 200", tt.method, code)
				}
			})
		})
	}
}

// TestRevocationAfterRemintIsNoStorm: a re-minted token that ECR accepted
// and then refuses (revoked, expired early) is news, not a refusal that
// goes on: it is re-minted at once, without waiting for the backoff.
func TestRevocationAfterRemintIsNoStorm(t *testing.T) {
	emu := newEmulator(t)
	dgst := seedBlob(t, emu, "team/app:1")
	synctest.Test(t, func(t *testing.T) {
		m := emu.InMemory()
		defer m.Close()
		e := newEmulated(t.Context(), t, emu, m.Transport())
		path := "/v2/team/app/blobs/" + dgst
		emu.ResetCounts()
		for i, refuse := range []func(){func() {}, emu.ExpireTokens, emu.RevokeTokens, emu.ExpireTokens} {
			refuse()
			if code, _ := e.do(t.Context(), t, http.MethodHead, path); code != http.StatusOK {
				t.Errorf("HEAD %d = %d, want 200", i, code)
			}
			if n := e.mints(); n != i+1 {
				t.Errorf("after HEAD %d: %d mints, want %d", i, n, i+1)
			}
		}
	})
}

// TestRunRetrySkipsMintAfterRequestMinted: a background renewal fails and
// Run retries it 5 s later; if a request has minted a token in between
// (ECR refused the old one), that retry would only replace a fresh token:
// one wasted GetAuthorizationToken. Run skips it and renews the new token
// on its own schedule.
func TestRunRetrySkipsMintAfterRequestMinted(t *testing.T) {
	emu := newEmulator(t)
	dgst := seedBlob(t, emu, "team/app:1")
	synctest.Test(t, func(t *testing.T) {
		m := emu.InMemory()
		defer m.Close()
		e := newEmulated(t.Context(), t, emu, m.Transport(), WithRenewInterval(time.Hour))
		emu.ResetCounts()
		defer e.startRun(t.Context())()
		synctest.Wait()
		if n := e.mints(); n != 1 {
			t.Fatalf("mints after Run started = %d, want 1", n)
		}
		emu.DenyMints(1) // the renewal fails
		waitForMint := func(n int) {
			t.Helper()
			for start := time.Now(); e.mints() < n; {
				if time.Since(start) > 2*time.Hour {
					t.Fatalf("mint %d did not happen; mints = %d", n, e.mints())
				}
				time.Sleep(time.Second)
				synctest.Wait()
			}
		}
		waitForMint(2) // the failed renewal, at 0.9 to 1 h
		emu.RevokeTokens()
		if code, _ := e.do(t.Context(), t, http.MethodHead, "/v2/team/app/blobs/"+dgst); code != http.StatusOK {
			t.Fatalf("HEAD after the revocation = %d, want 200 with a token minted for it", code)
		}
		minted := time.Now()
		if n := e.mints(); n != 3 {
			t.Fatalf("mints after the request = %d, want 3", n)
		}
		time.Sleep(time.Hour * 9 / 10) // past the retry, before the new token's renewal
		synctest.Wait()
		if n := e.mints(); n != 3 {
			t.Errorf("mints 0.9 h after the request's mint = %d, want still 3: the retry must not replace the fresh token", n)
		}
		waitForMint(4)
		if d := time.Since(minted); d > time.Hour+time.Second {
			t.Errorf("the new token was renewed %v after its mint, want at most 1 h", d)
		}
	})
}
