// Package redisstate tracks whether the Redis a replica shares with the
// others answers, for every part of the replica that uses it (the
// cluster's download claims and tag window, the shared cache's index):
// its loss and its return are logged once each, whichever part notices
// them, and /readyz reads one state.
package redisstate

import (
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// State is whether Redis answers. After a failure, the parts leave Redis
// alone for the retry interval (Skip), so that a lost Redis costs a
// request at most one call's deadline.
type State struct {
	log   logrus.FieldLogger
	lost  string // what the loss means, logged with it
	retry time.Duration
	now   func() time.Time

	mu        sync.Mutex
	downSince time.Time // zero while Redis answers
	retryAt   time.Time
	lastErr   error
	onRecover []func()
}

// New returns a State that logs to log, saying lost when Redis is lost
// (what goes on without it), and leaves Redis alone for retry after a
// failure; now is the clock (time.Now when nil).
func New(log logrus.FieldLogger, lost string, retry time.Duration, now func() time.Time) *State {
	if now == nil {
		now = time.Now
	}
	return &State{log: log, lost: lost, retry: retry, now: now}
}

// OnRecover adds f, called in a goroutine each time Redis answers again.
func (s *State) OnRecover(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRecover = append(s.onRecover, f)
}

// Skip reports whether Redis failed less than the retry interval ago.
func (s *State) Skip() bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.downSince.IsZero() && now.Before(s.retryAt)
}

// Note records the outcome of a call to Redis (nil: it answered).
func (s *State) Note(err error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && s.downSince.IsZero():
		s.downSince, s.lastErr = now, err
		s.log.WithError(err).Warn("redis unavailable: " + s.lost)
	case err != nil:
		s.lastErr = err
	case !s.downSince.IsZero():
		s.log.WithField("down_for", now.Sub(s.downSince).Round(time.Millisecond).String()).Info("redis answers again")
		s.downSince, s.lastErr = time.Time{}, nil
		for _, f := range s.onRecover {
			go f()
		}
	}
	if err != nil {
		s.retryAt = now.Add(s.retry)
	}
}

// Health is nil while Redis answers, else since when and why not.
func (s *State) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.downSince.IsZero() {
		return nil
	}
	return fmt.Errorf("redis unavailable since %s: %w", s.downSince.UTC().Format(time.RFC3339), s.lastErr)
}
