package cluster

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/ecr-proxy/ecr-proxy/pullthrough"
)

// secretScript returns the cluster's forwarding secret, storing ARGV[1]
// as the secret first if there is none yet (SET NX, then GET, atomically).
var secretScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])`)

func (c *Coordinator) secretKey() string { return c.prefix + ":forward-secret" }

// LoadSecret reads the cluster's forwarding secret from Redis, creating
// it if no replica has yet. The replicas send it as the value of
// pullthrough.ForwardedHeader, so that a client cannot mark its own
// request as forwarded. It is read again each time Redis answers again,
// and on first use if it could not be read at start.
func (c *Coordinator) LoadSecret(ctx context.Context) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("cluster: forwarding secret: %w", err)
	}
	var s string
	err := c.c.do(ctx, func(ctx context.Context) error {
		var err error
		s, err = secretScript.Run(ctx, c.c.rdb, []string{c.secretKey()}, hex.EncodeToString(b)).Text()
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster: read the forwarding secret from redis: %w", err)
	}
	if s == "" {
		return fmt.Errorf("cluster: the forwarding secret in redis (%s) is empty", c.secretKey())
	}
	c.secret.Store(&s)
	return nil
}

// forwardSecret is the cluster's forwarding secret, read from Redis if
// it was not yet; "" when Redis does not answer.
func (c *Coordinator) forwardSecret(ctx context.Context) string {
	if s := c.secret.Load(); s != nil {
		return *s
	}
	if err := c.LoadSecret(ctx); err != nil {
		return ""
	}
	return *c.secret.Load()
}

// Forwarded reports whether r was forwarded by another replica: its
// pullthrough.ForwardedHeader carries the cluster's secret. A header
// with any other value is ignored (the request is a client's), and its
// value is never logged.
func (c *Coordinator) Forwarded(r *http.Request) bool {
	got := r.Header.Get(pullthrough.ForwardedHeader)
	if got == "" {
		return false
	}
	want := c.forwardSecret(r.Context())
	if want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
		return true
	}
	c.log.WithField("remote", r.RemoteAddr).Debug("request marked as forwarded without the cluster's secret: handled as a client's")
	return false
}
