package auth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	"github.com/ecr-proxy/ecr-proxy/internal/logx"
	"github.com/ecr-proxy/ecr-proxy/internal/redact"
)

// Defaults of a TokenSource.
const (
	// DefaultRenewInterval is how often a token is renewed at most, the
	// seed proxy's RENEW_INTERVAL_HOURS default.
	DefaultRenewInterval = 6 * time.Hour
	// defaultMinValidity is how much lifetime a token must have left to be
	// handed out without first trying to mint a fresh one; a token that
	// lives less than four times this must have a quarter of its lifetime
	// left.
	defaultMinValidity = 5 * time.Minute
	// minRenewPeriod is the shortest time a token is used before Run
	// renews it, and before Token mints again on demand: however short a
	// token's lifetime looks (a clock ahead of ECR's can make it seem
	// over at once), mints do not follow each other faster than this.
	minRenewPeriod = 5 * time.Second
	// refusalBackoff is the shortest time between two mints while the
	// registry goes on refusing every token minted (see Invalidate).
	refusalBackoff = 5 * time.Second
	// defaultMintTimeout bounds one mint, retries of the SDK included.
	defaultMintTimeout = time.Minute
	// Retry of a failed background renewal: doubling from the first, up to
	// the last.
	minRetryDelay = 5 * time.Second
	maxRetryDelay = 5 * time.Minute
)

// TokenSource owns the ECR token of a process. It is safe for concurrent
// use: concurrent callers never cause more than one GetAuthorizationToken
// call at a time, and they all get the same token.
type TokenSource struct {
	api           ECRAPI
	renewInterval time.Duration
	minValidity   time.Duration
	log           logrus.FieldLogger
	observer      func(MintEvent)

	group singleflight.Group
	mu    sync.Mutex
	cur   *Token
	// curAccepted says the registry has accepted cur (see accepted).
	curAccepted bool
	// remint says cur was minted after the registry refused a token;
	// refused says a token was dropped for a refusal since the last mint.
	remint, refused bool
	// warned is the token whose refusals in refusalBackoff were logged.
	warned *Token
	// renewAt is when Run renews cur (see renewalTime).
	renewAt time.Time
	// mintErr is the last mint's error: nil when it succeeded, or before
	// the first.
	mintErr error
}

// MintEvent describes the outcome of one mint, for metrics.
type MintEvent struct {
	// Err is nil for a successful mint.
	Err error
	// Token is the minted token (zero when Err is set).
	Token Token
	// Duration is how long the mint took.
	Duration time.Duration
}

// TokenSourceOption configures a TokenSource.
type TokenSourceOption func(*TokenSource)

// WithRenewInterval sets the longest time a token is used before it is
// renewed (DefaultRenewInterval if unset or not positive). A token is
// renewed earlier, at half of its lifetime, when that comes first.
func WithRenewInterval(d time.Duration) TokenSourceOption {
	return func(s *TokenSource) {
		if d > 0 {
			s.renewInterval = d
		}
	}
}

// WithLogger sets the logger for token lifecycle events. The default
// discards them. Tokens are never logged.
func WithLogger(l logrus.FieldLogger) TokenSourceOption {
	return func(s *TokenSource) {
		if l != nil {
			s.log = l
		}
	}
}

// WithMintObserver sets a function called after every mint attempt, such
// as a metrics recorder. It must not block.
func WithMintObserver(f func(MintEvent)) TokenSourceOption {
	return func(s *TokenSource) { s.observer = f }
}

// NewTokenSource returns a TokenSource minting through api.
func NewTokenSource(api ECRAPI, opts ...TokenSourceOption) (*TokenSource, error) {
	if api == nil {
		return nil, errors.New("new token source: nil ECR API")
	}
	s := &TokenSource{
		api:           api,
		renewInterval: DefaultRenewInterval,
		minValidity:   defaultMinValidity,
		log:           logx.Discard(),
		observer:      func(MintEvent) {},
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Token returns the current token, minting one first when there is none or
// when it is about to expire: when less than five minutes of it are left,
// or less than a quarter of its lifetime for a token that lives less than
// twenty minutes (with Run, tokens are renewed before that). A token minted
// less than five seconds ago is returned as it is. If that mint fails while
// the current token is still valid, the current token is returned.
func (s *TokenSource) Token(ctx context.Context) (Token, error) {
	cur := s.current()
	if cur != nil && !s.dueOnDemand(cur, time.Now()) {
		return *cur, nil
	}
	t, err := s.mint(ctx)
	if err != nil {
		if cur != nil && time.Now().Before(cur.ExpiresAt) {
			return *cur, nil
		}
		return Token{}, err
	}
	return t, nil
}

// dueOnDemand reports whether Token must mint before it hands out cur at
// now: less than minValidity of cur is left, or less than a quarter of its
// lifetime when that is shorter, so that a short-lived token is renewed
// once in a while and not by every request.
func (s *TokenSource) dueOnDemand(cur *Token, now time.Time) bool {
	if now.Sub(cur.MintedAt) < minRenewPeriod {
		return false
	}
	margin := min(s.minValidity, cur.ExpiresAt.Sub(cur.MintedAt)/4)
	return !now.Before(cur.ExpiresAt.Add(-margin))
}

// Invalidate drops t if it is still the current token, so that the next
// call to Token mints. Call it when the registry refused t.
//
// A token minted because the registry refused the one before, and refused
// in turn before the registry ever accepted it, is kept until five seconds
// after its mint: the registry still refuses whatever is minted, and
// another token now would only be the first of one mint per request.
// Callers get the refusal meanwhile, and there is at most one mint every
// five seconds while the refusals go on.
func (s *TokenSource) Invalidate(t Token) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || !s.cur.same(t) {
		return
	}
	if s.remint && !s.curAccepted && now.Sub(s.cur.MintedAt) < refusalBackoff {
		if s.warned != s.cur {
			s.warned = s.cur
			s.log.WithField("next_mint_after", s.cur.MintedAt.Add(refusalBackoff).UTC().Format(time.RFC3339Nano)).
				Warn("ECR refuses the token minted after it refused the previous one; requests get its refusal, and no token is minted before next_mint_after")
		}
		return
	}
	s.cur, s.refused = nil, true
	s.log.Info("ECR refused the current token; it will be minted again")
}

// accepted records that the registry accepted t: a refusal of t is then
// news, such as a revocation, and worth a new token at once.
func (s *TokenSource) accepted(t Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.curAccepted && s.cur != nil && s.cur.same(t) {
		s.curAccepted = true
	}
}

// Run renews the token in the background until ctx ends: at once when
// there is none, then before each token reaches the renew interval or half
// of its lifetime, whichever comes first, less a random jitter of up to a
// tenth, so that replicas spread their calls (and never sooner than 5 s
// after the token was minted). A failed renewal keeps the current token
// and is retried with exponential backoff, unless a token was minted
// meanwhile (by a request), which is then renewed on its own schedule.
// Run returns ctx.Err().
func (s *TokenSource) Run(ctx context.Context) error {
	retry := time.Duration(0)
	for {
		wait := retry
		if wait == 0 {
			wait = s.untilRenewal(time.Now())
		}
		if wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
			}
		}
		if s.untilRenewal(time.Now()) > 0 {
			// A token was minted during the wait (by a request, after a
			// refusal or on demand) and is not due: neither the retry of
			// a failed renewal nor the renewal of the token it replaced
			// has anything left to do.
			retry = 0
			continue
		}
		if _, err := s.mint(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			retry = nextRetry(retry)
			s.log.WithError(redact.Error(err)).WithField("retry_in", retry.String()).Warn("renewing the ECR token failed")
			continue
		}
		retry = 0
	}
}

// untilRenewal is how long Run waits before renewing the current token:
// until its renewal time, 0 or less when there is none or it is due.
func (s *TokenSource) untilRenewal(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return 0
	}
	return s.renewAt.Sub(now)
}

// renewalTime is when Run renews t: after the renew interval or half of
// its lifetime, whichever comes first, less a random jitter of up to a
// tenth, and not sooner than minRenewPeriod. It is drawn once per token.
func (s *TokenSource) renewalTime(t Token) time.Time {
	period := min(s.renewInterval, t.ExpiresAt.Sub(t.MintedAt)/2)
	period -= time.Duration(rand.Float64() * float64(period) / 10) //nolint:gosec // jitter, not a secret
	return t.MintedAt.Add(max(period, minRenewPeriod))
}

func nextRetry(prev time.Duration) time.Duration {
	if prev == 0 {
		return minRetryDelay
	}
	return min(2*prev, maxRetryDelay)
}

// MintFailure returns why the last mint failed while the source holds no
// token it can hand out (none, or the current one has expired): until a
// mint succeeds, every request that needs a token fails. It is nil while
// a token is valid (a failed renewal is retried meanwhile), once a mint
// has succeeded, and before the first mint ends. It does not block on a
// mint in flight.
func (s *TokenSource) MintFailure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mintErr == nil || (s.cur != nil && time.Now().Before(s.cur.ExpiresAt)) {
		return nil
	}
	return s.mintErr
}

func (s *TokenSource) current() *Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// mint calls GetAuthorizationToken once for all concurrent callers. The
// call runs detached from any one caller's cancellation, bounded by
// defaultMintTimeout, so that a caller that goes away does not fail the
// others.
func (s *TokenSource) mint(ctx context.Context) (Token, error) {
	ch := s.group.DoChan("mint", func() (any, error) {
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultMintTimeout)
		defer cancel()
		start := time.Now()
		out, err := s.api.GetAuthorizationToken(mctx, &ecr.GetAuthorizationTokenInput{})
		var t Token
		if err == nil {
			t, err = decodeToken(out, time.Now())
		}
		s.observer(MintEvent{Err: err, Token: t, Duration: time.Since(start)})
		if err != nil {
			err = fmt.Errorf("get ECR authorization token: %w", redact.Error(err))
			s.mu.Lock()
			s.mintErr = err
			s.mu.Unlock()
			return Token{}, err
		}
		s.mu.Lock()
		s.cur, s.curAccepted, s.renewAt = &t, false, s.renewalTime(t)
		s.remint, s.refused, s.mintErr = s.refused, false, nil
		s.mu.Unlock()
		s.log.WithField("expires_at", t.ExpiresAt.UTC().Format(time.RFC3339)).Info("minted ECR token")
		return t, nil
	})
	select {
	case <-ctx.Done():
		return Token{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return Token{}, r.Err
		}
		return r.Val.(Token), nil
	}
}
