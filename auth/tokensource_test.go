package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func newSource(t *testing.T, api ECRAPI, opts ...TokenSourceOption) *TokenSource {
	t.Helper()
	s, err := NewTokenSource(api, opts...)
	if err != nil {
		t.Fatalf("NewTokenSource: %v", err)
	}
	return s
}

func TestTokenDecodesAndRedacts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSource(t, &fakeECR{lifetime: 12 * time.Hour})
		tok, err := s.Token(t.Context())
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		if tok.Username != "AWS" || tok.Password != "pw-1" {
			t.Errorf("Token = %q/%q, want AWS/pw-1", tok.Username, tok.Password)
		}
		if got, want := tok.ExpiresAt.Sub(tok.MintedAt), 12*time.Hour; got != want {
			t.Errorf("lifetime = %v, want %v", got, want)
		}
		for _, s := range []string{tok.String(), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok)} {
			if strings.Contains(s, "pw-1") || strings.Contains(s, tok.BasicAuth()[6:]) {
				t.Errorf("formatted token leaks the secret: %s", s)
			}
		}
	})
}

func TestConcurrentCallersMintOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &fakeECR{block: make(chan struct{})}
		s := newSource(t, api)
		var wg sync.WaitGroup
		got := make([]Token, 50)
		for i := range got {
			wg.Go(func() {
				tok, err := s.Token(t.Context())
				if err != nil {
					t.Errorf("Token: %v", err)
				}
				got[i] = tok
			})
		}
		synctest.Wait() // every caller waits on the one mint
		close(api.block)
		wg.Wait()
		if n := api.Calls(); n != 1 {
			t.Errorf("GetAuthorizationToken calls = %d, want 1", n)
		}
		for i, tok := range got {
			if tok.Password != "pw-1" {
				t.Errorf("caller %d got %q, want pw-1", i, tok.Password)
			}
		}
	})
}

func TestCallerCancellationDoesNotFailOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &fakeECR{block: make(chan struct{})}
		s := newSource(t, api)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { _, err := s.Token(ctx); errc <- err }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller: err = %v, want context.Canceled", err)
		}
		done := make(chan Token, 1)
		go func() { tok, _ := s.Token(t.Context()); done <- tok }()
		synctest.Wait()
		close(api.block)
		if tok := <-done; tok.Password != "pw-1" {
			t.Errorf("second caller got %q, want pw-1 from the same mint", tok.Password)
		}
		if n := api.Calls(); n != 1 {
			t.Errorf("calls = %d, want 1", n)
		}
	})
}

func TestRunRenewsBeforeIntervalAndHalfLife(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		lifetime time.Duration
		period   time.Duration // renewal due after at most this, and at least 0.9 of it
	}{
		{"interval first", 2 * time.Hour, 12 * time.Hour, 2 * time.Hour},
		{"half-life first", 6 * time.Hour, 4 * time.Hour, 2 * time.Hour},
		{"default interval", 0, 12 * time.Hour, 6 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				api := &fakeECR{lifetime: tt.lifetime}
				s := newSource(t, api, WithRenewInterval(tt.interval))
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				go func() { _ = s.Run(ctx) }()
				synctest.Wait()
				if n := api.Calls(); n != 1 {
					t.Fatalf("after start: calls = %d, want 1 (mint at once)", n)
				}
				time.Sleep(tt.period * 9 / 10) // fake time: no renewal before 0.9 × period
				synctest.Wait()
				if n := api.Calls(); n != 1 {
					t.Errorf("before 0.9×period: calls = %d, want 1", n)
				}
				time.Sleep(tt.period/10 + time.Nanosecond)
				synctest.Wait()
				if n := api.Calls(); n != 2 {
					t.Errorf("after period: calls = %d, want 2", n)
				}
				tok, err := s.Token(ctx)
				if err != nil || tok.Password != "pw-2" {
					t.Errorf("Token after renewal = %q, %v; want pw-2", tok.Password, err)
				}
				if n := api.Calls(); n != 2 {
					t.Errorf("Token after renewal minted again: calls = %d", n)
				}
			})
		})
	}
}

func TestFailedRenewalKeepsTokenAndBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		throttled := errors.New("ThrottlingException: Rate exceeded")
		api := &fakeECR{lifetime: 2 * time.Hour, fail: func(n int) error {
			if n >= 2 && n <= 4 {
				return throttled
			}
			return nil
		}}
		s := newSource(t, api, WithRenewInterval(time.Hour))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { _ = s.Run(ctx) }()
		// waitForCall steps fake time a second at a time until call n
		// happened, and returns how long that took.
		waitForCall := func(n int) time.Duration {
			t.Helper()
			start := time.Now()
			for api.Calls() < n {
				if time.Since(start) > 2*time.Hour {
					t.Fatalf("call %d did not happen; calls = %d", n, api.Calls())
				}
				time.Sleep(time.Second)
				synctest.Wait()
			}
			return time.Since(start)
		}
		waitForCall(2) // the renewal, which fails
		tok, err := s.Token(ctx)
		if err != nil || tok.Password != "pw-1" {
			t.Fatalf("Token during failure = %q, %v; want the still-valid pw-1", tok.Password, err)
		}
		for i, want := range []time.Duration{minRetryDelay, 2 * minRetryDelay, 4 * minRetryDelay} {
			if got := waitForCall(3 + i); got < want || got > want+time.Second {
				t.Errorf("retry %d came after %v, want %v (backoff)", i+1, got, want)
			}
		}
		tok, err = s.Token(ctx)
		if err != nil || tok.Password != "pw-5" {
			t.Errorf("Token after recovery = %q, %v; want pw-5", tok.Password, err)
		}
		if n := api.Calls(); n != 5 {
			t.Errorf("calls = %d, want 5", n)
		}
	})
}

func TestNoTokenAndMintFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		denied := errors.New("AccessDeniedException")
		s := newSource(t, &fakeECR{fail: func(int) error { return denied }})
		if _, err := s.Token(t.Context()); !errors.Is(err, denied) {
			t.Errorf("Token error = %v, want it to wrap %v", err, denied)
		}
	})
}

// TestMintFailureOnlyWithoutAValidToken: MintFailure reports the last
// mint's error only while no valid token is left to hand out.
func TestMintFailureOnlyWithoutAValidToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		denied := errors.New("AccessDeniedException")
		var failing atomic.Bool
		s := newSource(t, &fakeECR{lifetime: time.Hour, fail: func(int) error {
			if failing.Load() {
				return denied
			}
			return nil
		}})
		if err := s.MintFailure(); err != nil {
			t.Errorf("MintFailure before any mint = %v, want nil", err)
		}
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		failing.Store(true)
		time.Sleep(58 * time.Minute) // due on demand, still valid
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatalf("Token with a valid token while minting fails: %v", err)
		}
		if err := s.MintFailure(); err != nil {
			t.Errorf("MintFailure with a valid token = %v, want nil", err)
		}
		time.Sleep(3 * time.Minute) // expired
		if _, err := s.Token(t.Context()); !errors.Is(err, denied) {
			t.Fatalf("Token after expiry = %v, want %v", err, denied)
		}
		if err := s.MintFailure(); !errors.Is(err, denied) {
			t.Errorf("MintFailure after expiry = %v, want %v", err, denied)
		}
		failing.Store(false)
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.MintFailure(); err != nil {
			t.Errorf("MintFailure after a successful mint = %v, want nil", err)
		}
	})
}

func TestInvalidateOnlyDropsTheRefusedToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &fakeECR{}
		s := newSource(t, api)
		old, _ := s.Token(t.Context())
		s.Invalidate(old)
		fresh, err := s.Token(t.Context())
		if err != nil || fresh.Password != "pw-2" {
			t.Fatalf("after Invalidate: %q, %v; want pw-2", fresh.Password, err)
		}
		s.Invalidate(old) // a late refusal of the old token
		again, _ := s.Token(t.Context())
		if again.Password != "pw-2" || api.Calls() != 2 {
			t.Errorf("stale Invalidate re-minted: got %q after %d calls", again.Password, api.Calls())
		}
	})
}

func TestTokenNearExpiryIsRenewedOnDemand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &fakeECR{lifetime: time.Hour}
		s := newSource(t, api)
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour - defaultMinValidity + time.Second)
		tok, err := s.Token(t.Context())
		if err != nil || tok.Password != "pw-2" {
			t.Errorf("Token near expiry = %q, %v; want a fresh pw-2", tok.Password, err)
		}
	})
}
