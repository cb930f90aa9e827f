package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
)

// conn is a Redis client that this replica stops asking for a while
// after a failure, and whose state it reports.
type conn struct {
	rdb       redis.UniversalClient
	log       logrus.FieldLogger
	opTimeout time.Duration
	retry     time.Duration
	now       func() time.Time

	mu        sync.Mutex
	downSince time.Time
	retryAt   time.Time
	lastErr   error
}

// errSkipped is returned while Redis is left alone after a failure.
var errSkipped = errors.New("redis unavailable: skipped")

// do runs fn with the call deadline unless Redis failed less than the
// retry interval ago; redis.Nil is not a failure.
func (c *conn) do(ctx context.Context, fn func(ctx context.Context) error) error {
	now := c.now()
	c.mu.Lock()
	skip := !c.downSince.IsZero() && now.Before(c.retryAt)
	c.mu.Unlock()
	if skip {
		return errSkipped
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opTimeout)
	defer cancel()
	err := fn(ctx)
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil && c.downSince.IsZero():
		c.downSince, c.lastErr = now, err
		c.log.WithError(err).Warn("redis unavailable: each replica downloads for itself and keeps its own tag window until it answers")
	case err != nil:
		c.lastErr = err
	case !c.downSince.IsZero():
		c.log.WithField("down_for", now.Sub(c.downSince).Round(time.Millisecond).String()).Info("redis answers again: downloads and tag checks are shared again")
		c.downSince, c.lastErr = time.Time{}, nil
	}
	if err != nil {
		c.retryAt = now.Add(c.retry)
	}
	return err
}

// health is nil while Redis answers, else since when and why not.
func (c *conn) health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.downSince.IsZero() {
		return nil
	}
	return fmt.Errorf("redis unavailable since %s: %w", c.downSince.UTC().Format(time.RFC3339), c.lastErr)
}
