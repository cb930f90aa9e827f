package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/abort"
	"github.com/ecr-proxy/ecr-proxy/internal/logx"
	"github.com/ecr-proxy/ecr-proxy/internal/redisstate"
	"github.com/ecr-proxy/ecr-proxy/pullthrough"
)

// Defaults of a Coordinator.
const (
	// DefaultLeaseTTL is a download claim's deadline; it is renewed at
	// a third of it while bytes arrive.
	DefaultLeaseTTL = 15 * time.Second
	// DefaultOpTimeout bounds one Redis call.
	DefaultOpTimeout = 2 * time.Second
	// DefaultRetryInterval is how long Redis is left alone after a
	// failure.
	DefaultRetryInterval = 5 * time.Second
	// forwardHeaderTimeout bounds the wait for the owner's response
	// headers (it may itself wait for ECR's first byte).
	forwardHeaderTimeout = time.Minute
)

// The claim scripts: KEYS the lease; ARGV this replica's value (and the
// deadline in ms).
var (
	// claim: take the lease if free, renew it if ours; return the holder.
	claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v`)
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)
	dropScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// Coordinator shares blob downloads and tag checks between replicas
// through Redis (see the package documentation).
type Coordinator struct {
	c      *conn
	log    logrus.FieldLogger
	prefix string
	ttl    time.Duration
	client *http.Client
	token  string
	scheme string                 // of the URL SetListenAddr makes
	self   atomic.Pointer[string] // this replica's lease value: "<url> <token>"
	secret atomic.Pointer[string] // the cluster's forwarding secret, once read (secret.go)

	events  func(Event)    // observer of forwards, or nil
	rootCAs *x509.CertPool // the peers' CAs, or nil: the system's

	mu      sync.Mutex
	renewed map[string]time.Time
}

// Event is what happened to a forwarded request, for metrics.
type Event string

// Events of forwarded requests.
const (
	// EventForwarded: the owner answered the forwarded request.
	EventForwarded Event = "forwarded"
	// EventOwnerGone: the owner did not answer; its claim was dropped.
	EventOwnerGone Event = "owner_gone"
	// EventCut: the owner's answer was cut midway, and so the client's.
	EventCut Event = "cut"
)

// WithEvents sets a function told each Event; it must not block.
func WithEvents(f func(Event)) Option { return func(c *Coordinator) { c.events = f } }

func (c *Coordinator) note(e Event) {
	if c.events != nil {
		c.events(e)
	}
}

var _ pullthrough.Coordinator = (*Coordinator)(nil)

// Option configures a Coordinator.
type Option func(*Coordinator)

// WithLogger sets where the Coordinator logs (the loss and return of
// Redis too, unless WithRedisState gives a State).
func WithLogger(l logrus.FieldLogger) Option { return func(c *Coordinator) { c.log = l } }

// WithRedisState shares st, the replica's one record of whether Redis
// answers, so that its loss is logged once for all the parts using it.
func WithRedisState(st *redisstate.State) Option { return func(c *Coordinator) { c.c.st = st } }

// WithLeaseTTL sets the download claims' deadline.
func WithLeaseTTL(d time.Duration) Option { return func(c *Coordinator) { c.ttl = d } }

// WithPrefix sets the Redis key prefix (one per shared cache).
func WithPrefix(p string) Option { return func(c *Coordinator) { c.prefix = p } }

// WithScheme sets the scheme of the address the Coordinator advertises
// when it learns it from a connection (default http).
func WithScheme(scheme string) Option { return func(c *Coordinator) { c.scheme = scheme } }

// WithRootCAs makes forwarded requests trust the CAs in pool, instead of
// the system's, for replicas that serve TLS at their advertised URLs
// with certificates of a private CA; nil keeps the system's. A transport
// set with WithTransport is left as it is.
func WithRootCAs(pool *x509.CertPool) Option { return func(c *Coordinator) { c.rootCAs = pool } }

// WithTransport sets the transport of forwarded requests.
func WithTransport(rt http.RoundTripper) Option {
	return func(c *Coordinator) { c.client.Transport = rt }
}

// New returns a Coordinator over rdb. It claims nothing until it knows
// its own address: SetAdvertise, or else the local address of the
// connection of the first request it claims a download for.
func New(rdb redis.UniversalClient, opts ...Option) (*Coordinator, error) {
	if rdb == nil {
		return nil, errors.New("cluster: a redis client is required")
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("cluster: token: %w", err)
	}
	tr := &http.Transport{
		Proxy:                 nil, // replicas talk directly
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		ResponseHeaderTimeout: forwardHeaderTimeout,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       time.Minute,
	}
	c := &Coordinator{
		c:       &conn{rdb: rdb, opTimeout: DefaultOpTimeout, now: time.Now},
		log:     logx.Discard(),
		prefix:  "ecr-proxy",
		ttl:     DefaultLeaseTTL,
		client:  &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		token:   hex.EncodeToString(b),
		scheme:  "http",
		renewed: map[string]time.Time{},
	}
	for _, o := range opts {
		o(c)
	}
	if c.rootCAs != nil && c.client.Transport == tr {
		tr.TLSClientConfig = &tls.Config{RootCAs: c.rootCAs, MinVersion: tls.VersionTLS12}
	}
	if c.c.st == nil {
		c.c.st = redisstate.New(c.log, lostMessage, DefaultRetryInterval, c.c.now)
	}
	// Redis may have come back empty (restarted without persistence):
	// the secret is read again, created anew if need be.
	c.c.st.OnRecover(func() { _ = c.LoadSecret(context.Background()) })
	return c, nil
}

// SetAdvertise sets the URL other replicas reach this one at
// (http://10.0.3.7:5000).
func (c *Coordinator) SetAdvertise(url string) { c.self.Store(c.value(url)) }

// learnAddr sets this replica's address, when none was advertised, from
// the local address of the connection ctx's request came on (its IP, or
// the host's first non-loopback address if that is unspecified).
func (c *Coordinator) learnAddr(ctx context.Context) {
	addr, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return
	}
	if url := c.listenURL(addr); url != "" && c.self.CompareAndSwap(nil, c.value(url)) {
		c.log.WithField("advertise", url).Info("replica address for the cluster's shared downloads, from a client connection (ecr.advertise unset)")
	}
}

// value is the lease value of this replica at url.
func (c *Coordinator) value(url string) *string {
	v := strings.TrimSuffix(url, "/") + " " + c.token
	return &v
}

// listenURL is this replica's URL for a connection's local address.
func (c *Coordinator) listenURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return ""
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		if ip = hostIP(); ip == nil {
			return ""
		}
	}
	return c.scheme + "://" + net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}

// hostIP is the host's first non-loopback unicast address, IPv4 first.
func hostIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var v6 net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP
		}
		if v6 == nil {
			v6 = n.IP
		}
	}
	return v6
}

// Health is nil while Redis answers, and says since when and why not.
func (c *Coordinator) Health() error { return c.c.health() }

func (c *Coordinator) leaseKey(key string) string { return c.prefix + ":blob:" + key }

// Claim claims the download of key for this replica, or names the
// replica that holds it. Without Redis (or the cluster's forwarding
// secret), or while this replica knows no address of its own, every
// claim is this replica's.
func (c *Coordinator) Claim(ctx context.Context, key string) (string, bool) {
	if c.self.Load() == nil {
		c.learnAddr(ctx)
	}
	self := c.self.Load()
	if self == nil || c.forwardSecret(ctx) == "" {
		return "", true
	}
	var holder string
	err := c.c.do(ctx, func(ctx context.Context) error {
		var err error
		holder, err = claimScript.Run(ctx, c.c.rdb, []string{c.leaseKey(key)}, *self, c.ttl.Milliseconds()).Text()
		return err
	})
	if err != nil || holder == *self || holder == "" {
		if err == nil {
			c.noteRenewed(key)
		}
		return "", true
	}
	return holder, false
}

// Renew extends this replica's claim on key, at most every third of the
// deadline, without blocking the download.
func (c *Coordinator) Renew(key string) {
	self := c.self.Load()
	if self == nil {
		return
	}
	c.mu.Lock()
	due := c.c.now().Sub(c.renewed[key]) >= c.ttl/3
	if due {
		c.renewed[key] = c.c.now()
	}
	c.mu.Unlock()
	if !due {
		return
	}
	go func() {
		_ = c.c.do(context.Background(), func(ctx context.Context) error {
			return renewScript.Run(ctx, c.c.rdb, []string{c.leaseKey(key)}, *self, c.ttl.Milliseconds()).Err()
		})
	}()
}

// noteRenewed records that key's claim was just taken or renewed, and
// forgets claims older than their deadline once the map grows (claims
// taken for downloads that never started are not released).
func (c *Coordinator) noteRenewed(key string) {
	now := c.c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.renewed[key] = now
	if len(c.renewed) > 10_000 {
		for k, t := range c.renewed {
			if now.Sub(t) > c.ttl {
				delete(c.renewed, k)
			}
		}
	}
}

// Release gives up this replica's claim on key.
func (c *Coordinator) Release(key string) {
	c.mu.Lock()
	delete(c.renewed, key)
	c.mu.Unlock()
	if self := c.self.Load(); self != nil {
		c.drop(context.Background(), key, *self)
	}
}

// drop deletes the lease of key if holder still holds it.
func (c *Coordinator) drop(ctx context.Context, key, holder string) {
	_ = c.c.do(ctx, func(ctx context.Context) error {
		return dropScript.Run(ctx, c.c.rdb, []string{c.leaseKey(key)}, holder).Err()
	})
}

// relay copies the owner's body to the client, flushing every chunk, so
// that the client gets the bytes as they arrive from ECR: the headers at
// once (a client with a Range far ahead knows its bytes are coming), and
// a body that grows with the owner's download.
func relay(w http.ResponseWriter, body io.Reader) error {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 256<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil //nolint:nilerr // the client went away; nothing to cut
			}
			_ = rc.Flush()
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// hopHeaders are not passed on between the owner and the client.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forwardedRequestHeaders are what the owner needs of the client's GET.
var forwardedRequestHeaders = []string{"Authorization", "Range", "If-Range", "If-None-Match", "If-Modified-Since", "Accept", "User-Agent"}

// Forward answers r from the owner (a lease value: its URL and token).
// If the owner does not answer, its lease is dropped and ErrOwnerGone
// returned with nothing written. A response cut midway is cut for the
// client too (the gateway drops its connection).
func (c *Coordinator) Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, key, owner string) error {
	base, _, _ := strings.Cut(owner, " ")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+r.URL.RequestURI(), nil) //nolint:gosec // a peer replica, from the shared Redis; the path the registry routed
	if err != nil {
		return fmt.Errorf("forward to %s: %w", base, err)
	}
	for _, h := range forwardedRequestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	secret := c.forwardSecret(ctx)
	if secret == "" { // only once Redis answered (Claim read it), so not expected
		return fmt.Errorf("%w: %s: no forwarding secret: redis does not answer", pullthrough.ErrOwnerGone, base)
	}
	req.Header.Set(pullthrough.ForwardedHeader, secret)
	resp, err := c.client.Do(req) //nolint:gosec // a peer's advertised address, from the shared Redis
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.drop(ctx, key, owner)
		c.note(EventOwnerGone)
		return fmt.Errorf("%w: %s: %w", pullthrough.ErrOwnerGone, base, err)
	}
	defer resp.Body.Close() //nolint:errcheck // read to the end or cut
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	w.WriteHeader(resp.StatusCode)
	if err := relay(w, resp.Body); err != nil && ctx.Err() == nil {
		// The owner's response was cut (it died, or its download
		// failed): the client must see a cut, never a short body that
		// looks complete, and its retry finds the download taken over.
		c.log.WithError(err).WithField("owner", base).Warn("forwarded blob download cut; the client's response is cut too")
		abort.Request(ctx)
		c.note(EventCut)
		return nil
	}
	c.note(EventForwarded)
	return nil
}
