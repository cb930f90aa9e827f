package cluster

import (
	"context"
	"time"

	"github.com/ecr-proxy/ecr-proxy/pullthrough"
)

var _ pullthrough.TagWindow = (*Coordinator)(nil)

func (c *Coordinator) tagKey(key string) string { return c.prefix + ":tag:" + key }

// TagChecked reports whether a replica confirmed key (repository:tag)
// with ECR within the window; false without Redis.
func (c *Coordinator) TagChecked(ctx context.Context, key string) bool {
	var n int64
	err := c.c.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = c.c.rdb.Exists(ctx, c.tagKey(key)).Result()
		return err
	})
	return err == nil && n == 1
}

// NoteTagChecked starts key's window for every replica, for ttl.
func (c *Coordinator) NoteTagChecked(ctx context.Context, key string, ttl time.Duration) {
	_ = c.c.do(ctx, func(ctx context.Context) error {
		return c.c.rdb.Set(ctx, c.tagKey(key), c.c.now().UTC().Format(time.RFC3339Nano), ttl).Err()
	})
}

// ForgetTag ends key's window (ECR no longer has the tag).
func (c *Coordinator) ForgetTag(ctx context.Context, key string) {
	_ = c.c.do(ctx, func(ctx context.Context) error { return c.c.rdb.Del(ctx, c.tagKey(key)).Err() })
}
