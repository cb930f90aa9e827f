package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ecr-proxy/ecr-proxy/internal/redisstate"
)

// conn is a Redis client that this replica stops asking for a while
// after a failure, and whose state (shared with the replica's other
// users of Redis, if given one) it reports.
type conn struct {
	rdb       redis.UniversalClient
	st        *redisstate.State
	opTimeout time.Duration
	now       func() time.Time
}

// lostMessage says what goes on without Redis, for the Coordinator's own
// State (the command shares one State between its parts instead).
const lostMessage = "each replica downloads for itself and keeps its own tag window until it answers"

// errSkipped is returned while Redis is left alone after a failure.
var errSkipped = errors.New("redis unavailable: skipped")

// do runs fn with the call deadline unless Redis failed less than the
// retry interval ago; redis.Nil is not a failure.
func (c *conn) do(ctx context.Context, fn func(ctx context.Context) error) error {
	if c.st.Skip() {
		return errSkipped
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opTimeout)
	defer cancel()
	err := fn(ctx)
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	c.st.Note(err)
	return err
}

// health is nil while Redis answers, else since when and why not.
func (c *conn) health() error { return c.st.Health() }
