package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/gateway"
)

// runServer serves handler (the chain distribution built, with the
// gateway outermost) as configured in http:, until SIGINT or SIGTERM,
// then shuts down within http.draintimeout (see shutdown).
//
// It replaces distribution's Registry.ListenAndServe, which loads the TLS
// certificate once: here the certificate and key files are watched and a
// renewed pair is used for new connections without a restart. It also
// applies ecr-proxy's limits of the http section (serverLimits): timeouts
// that cut idle and stalled clients but never slow ones, and a cap on
// connections that keeps /healthz answering.
//
// It returns, with what stopped it, the deadline of the shutdown budget,
// for serve's wait for the downloads still in flight.
func runServer(ctx context.Context, cfg *configuration.Configuration, limits serverLimits, handler http.Handler, log logrus.FieldLogger) (time.Time, error) {
	tlsConf, err := serverTLS(cfg.HTTP.TLS, log)
	if err != nil {
		return time.Now(), err
	}
	lim := limits.withDefaults()
	network := cfg.HTTP.Net
	if network == "" {
		network = "tcp"
	}
	ln, err := net.Listen(network, cfg.HTTP.Addr)
	if err != nil {
		return time.Now(), fmt.Errorf("http.addr %q: %w", cfg.HTTP.Addr, err)
	}
	ln = newConnLimiter(ln, lim.MaxConnections, lim.spareLife(), log)
	srv := &http.Server{
		Handler:           limitRequests(handler, lim.BodyIdleTimeout, log),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		TLSConfig:         tlsConf,
		ConnContext:       markSpare,
	}
	if cfg.HTTP.HTTP2.Disabled {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
		log.Infof("listening on %v, tls", ln.Addr())
	} else {
		log.Infof("listening on %v", ln.Addr())
	}
	lim.log(log)

	stop, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return time.Now().Add(cfg.HTTP.DrainTimeout), err
	case <-stop.Done():
	}
	deadline := time.Now().Add(cfg.HTTP.DrainTimeout)
	return deadline, shutdown(ctx, deadline, srv, log)
}

// shutdown stops srv within http.draintimeout, the budget of the whole
// shutdown: it drains the connections (requests in progress finish;
// cold pulls finish with their downloads) and, at the deadline, closes
// those still open. What is left of the budget goes to serve's wait for
// the downloads still in flight, up to the same deadline (runServer
// returns it). So SIGTERM to exit takes at most http.draintimeout, plus
// the moment it takes to exit.
func shutdown(ctx context.Context, deadline time.Time, srv *http.Server, log logrus.FieldLogger) error {
	budget := time.Until(deadline).Round(time.Millisecond)
	log.Infof("stopping: draining connections, then downloads in flight, for at most %v (http.draintimeout)", budget)
	drain, cancelDrain := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancelDrain()
	err := srv.Shutdown(drain)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warnf("http.draintimeout %v reached: closing the connections still open", budget)
		_ = srv.Close() // its only error: the listener, closed already
		return nil
	}
	if err != nil {
		return fmt.Errorf("drain connections: %w", err)
	}
	return nil
}

// serverTLS builds the TLS configuration of http.tls, or nil without TLS.
func serverTLS(c configuration.TLS, log logrus.FieldLogger) (*tls.Config, error) {
	if c.LetsEncrypt.CacheFile != "" {
		return nil, errors.New("http.tls.letsencrypt is not supported by ecr-proxy: give http.tls.certificate and http.tls.key (renewed files are picked up without a restart)")
	}
	if c.Certificate == "" && c.Key == "" {
		return nil, nil
	}
	if c.Certificate == "" || c.Key == "" {
		return nil, fmt.Errorf("http.tls.certificate %q and http.tls.key %q: both are needed", c.Certificate, c.Key)
	}
	if len(c.CipherSuites) > 0 {
		return nil, fmt.Errorf("http.tls.ciphersuites %v: not supported by ecr-proxy; Go's default suites are used", c.CipherSuites)
	}
	certs := &certReloader{certPath: c.Certificate, keyPath: c.Key, log: log}
	if _, err := certs.GetCertificate(nil); err != nil {
		return nil, err
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
	switch c.MinimumTLS {
	case "", "tls1.2":
	case "tls1.3":
		conf.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("http.tls.minimumtls %q: want tls1.2 or tls1.3", c.MinimumTLS)
	}
	if len(c.ClientCAs) > 0 {
		pool := x509.NewCertPool()
		for _, path := range c.ClientCAs {
			pem, err := os.ReadFile(path) //nolint:gosec // the operator's own file
			if err != nil {
				return nil, fmt.Errorf("http.tls.clientcas %q: %w", path, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("http.tls.clientcas %q: no PEM certificate", path)
			}
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		if c.ClientAuth == configuration.ClientAuthVerifyClientCertIfGiven {
			conf.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return conf, nil
}

// certReloader serves the certificate in certPath/keyPath and reloads the
// pair when either file changes (checked at each handshake: a stat of two
// files). A pair that fails to load, such as one half-written, is logged
// and the previous one kept.
type certReloader struct {
	certPath, keyPath string
	log               logrus.FieldLogger

	mu      sync.Mutex
	cert    *tls.Certificate
	version string
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	v, err := fileVersion(r.certPath, r.keyPath)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && v == r.version && r.cert != nil {
		return r.cert, nil
	}
	cert, lerr := tls.LoadX509KeyPair(r.certPath, r.keyPath)
	switch {
	case lerr == nil:
		if r.cert != nil {
			r.log.Infof("TLS certificate %s reloaded", r.certPath)
		}
		r.cert, r.version = &cert, v
	case r.cert == nil:
		return nil, fmt.Errorf("http.tls.certificate %q and http.tls.key %q: %w", r.certPath, r.keyPath, lerr)
	default:
		r.log.WithError(lerr).Warnf("TLS certificate %s changed but does not load; still serving the previous one", r.certPath)
	}
	return r.cert, nil
}

// fileVersion identifies the current content of the files by inode, size
// and modification time.
func fileVersion(paths ...string) (string, error) {
	var v string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		v += fmt.Sprintf("%d/%d/%d;", ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return v, nil
}

// Defaults of serverLimits, and the spare connections kept past the cap.
const (
	defaultReadHeaderTimeout = 30 * time.Second
	defaultIdleTimeout       = 2 * time.Minute
	defaultBodyIdleTimeout   = time.Minute
	// maxDefaultConnections caps the default of http.maxconnections,
	// which is a quarter of the open-file limit: each connection may take
	// a few descriptors (the client's socket, a cache or spool file, a
	// connection to ECR).
	maxDefaultConnections = 10000
	minDefaultConnections = 64
	// spareConns connections past http.maxconnections are accepted for a
	// short while (maxSpareLife, or less with a shorter
	// http.readheadertimeout) to answer /healthz, and a 503 to anything
	// else; past those, new connections are closed at once.
	spareConns   = 64
	maxSpareLife = 5 * time.Second
)

// serverLimits are ecr-proxy's own keys of the http section, beside
// distribution's (whose configuration.HTTP has, of these concerns, only
// draintimeout): the timeouts and the connection cap of the server the
// clients talk to. Zero means the default. None bounds a whole request:
// a 6 GiB layer pushed or pulled over a slow link takes what it takes,
// as long as it moves.
type serverLimits struct {
	// ReadHeaderTimeout bounds the TLS handshake and the reading of a
	// request's headers (default 30s).
	ReadHeaderTimeout time.Duration `yaml:"readheadertimeout"`
	// IdleTimeout closes a keep-alive connection that sends no new
	// request for this long (default 2m).
	IdleTimeout time.Duration `yaml:"idletimeout"`
	// BodyIdleTimeout cuts a request whose body sends nothing for this
	// long (default 1m); a body that keeps arriving, however slowly, is
	// never cut.
	BodyIdleTimeout time.Duration `yaml:"bodyidletimeout"`
	// MaxConnections caps the client connections open at once (default:
	// a quarter of the open-file limit, at most 10000).
	MaxConnections int `yaml:"maxconnections"`
}

// check validates the keys given; each error names the key and value.
func (l serverLimits) check() error {
	for _, d := range []struct {
		key   string
		value time.Duration
		def   time.Duration
	}{
		{"http.readheadertimeout", l.ReadHeaderTimeout, defaultReadHeaderTimeout},
		{"http.idletimeout", l.IdleTimeout, defaultIdleTimeout},
		{"http.bodyidletimeout", l.BodyIdleTimeout, defaultBodyIdleTimeout},
	} {
		if d.value < 0 {
			return fmt.Errorf("%s %q: want a positive duration such as %v (0 or unset: the default, %v)", d.key, d.value, d.def, d.def)
		}
	}
	if l.MaxConnections < 0 {
		return fmt.Errorf("http.maxconnections %d: want a positive number of connections "+
			"(0 or unset: the default, a quarter of the open-file limit, at most %d)", l.MaxConnections, maxDefaultConnections)
	}
	return nil
}

// withDefaults fills in the keys left unset.
func (l serverLimits) withDefaults() serverLimits {
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = defaultReadHeaderTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = defaultIdleTimeout
	}
	if l.BodyIdleTimeout == 0 {
		l.BodyIdleTimeout = defaultBodyIdleTimeout
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = min(max(openFileLimit()/4, minDefaultConnections), maxDefaultConnections)
	}
	return l
}

// spareLife is how long a connection past the cap may live.
func (l serverLimits) spareLife() time.Duration {
	return min(l.ReadHeaderTimeout, maxSpareLife)
}

// log reports the limits in force, and a cap the open-file limit cannot
// back.
func (l serverLimits) log(log logrus.FieldLogger) {
	log.WithFields(logrus.Fields{
		"maxconnections":    l.MaxConnections,
		"readheadertimeout": l.ReadHeaderTimeout,
		"idletimeout":       l.IdleTimeout,
		"bodyidletimeout":   l.BodyIdleTimeout,
	}).Info("client connection limits (http section)")
	if files := openFileLimit(); (l.MaxConnections+spareConns)*2 > files {
		log.Warnf("http.maxconnections %d with an open-file limit of %d: a connection may take several descriptors; "+
			"raise the limit (LimitNOFILE, ulimit -n) or lower http.maxconnections", l.MaxConnections, files)
	}
}

// openFileLimit is the process's limit of open descriptors (Go raises
// the soft limit to the hard one at start), or a modest guess.
func openFileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 4096
	}
	if rl.Cur > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(rl.Cur)
}

// connLimiter is a listener that caps the connections in service at max.
// Past the cap, new connections are not left waiting in the kernel's
// queue, where /healthz would wait behind them until probes fail and
// kill a proxy that is merely busy, and clients would learn nothing: up
// to spareConns of them are accepted for spareLife each, to answer
// /healthz and a 503 with Retry-After to anything else; past those, they
// are closed at once.
type connLimiter struct {
	net.Listener
	max       int
	spareLife time.Duration
	log       logrus.FieldLogger

	mu      sync.Mutex
	open    int       // connections in service
	spare   int       // connections past the cap, not closed yet
	refused int       // connections closed at once since the last warning
	warned  time.Time // last warning
}

// capWarnEvery spaces the warnings that the cap is reached.
const capWarnEvery = time.Minute

func newConnLimiter(ln net.Listener, maxConns int, spareLife time.Duration, log logrus.FieldLogger) *connLimiter {
	return &connLimiter{Listener: ln, max: maxConns, spareLife: spareLife, log: log}
}

// Accept returns the next connection admitted, closing those refused.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
		_ = c.Close()
	}
}

// admit wraps c in service or as a spare, or returns nil to refuse it.
func (l *connLimiter) admit(c net.Conn) *limitedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open < l.max:
		l.open++
		return &limitedConn{Conn: c, release: func() { l.mu.Lock(); l.open--; l.mu.Unlock() }}
	case l.spare < spareConns:
		l.spare++
		l.warnLocked()
		lc := &limitedConn{Conn: c, expires: time.Now().Add(l.spareLife), release: func() { l.mu.Lock(); l.spare--; l.mu.Unlock() }}
		_ = c.SetDeadline(lc.expires)
		return lc
	default:
		l.refused++
		l.warnLocked()
		return nil
	}
}

func (l *connLimiter) warnLocked() {
	if time.Since(l.warned) < capWarnEvery {
		return
	}
	l.warned = time.Now()
	l.log.Warnf("connection cap reached: %d connections open (http.maxconnections); new ones get /healthz and a 503 for anything else, "+
		"%d of them at once; %d closed unanswered since the last warning", l.open, spareConns, l.refused)
	l.refused = 0
}

// limitedConn is a connection counted by a connLimiter until closed. A
// spare connection (expires set) gets no deadline past expires, whatever
// the server asks for.
type limitedConn struct {
	net.Conn
	expires time.Time
	once    sync.Once
	release func()
}

// Close releases the connection's place, then closes it.
func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func (c *limitedConn) clamp(t time.Time) time.Time {
	if !c.expires.IsZero() && (t.IsZero() || t.After(c.expires)) {
		return c.expires
	}
	return t
}

// SetDeadline implements net.Conn, within expires for a spare.
func (c *limitedConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

// SetReadDeadline implements net.Conn, within expires for a spare.
func (c *limitedConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }

// SetWriteDeadline implements net.Conn, within expires for a spare.
func (c *limitedConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

// ReadFrom keeps the TCP connection's sendfile for net/http, which looks
// for an io.ReaderFrom on its connection: blob hits are served by it.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite keeps the TCP half-close net/http uses before closing a
// connection after an error answer.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// spareKey marks, in a connection's context, a connection past the cap.
type spareKey struct{}

// markSpare is the server's ConnContext: it marks spare connections.
func markSpare(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitedConn); ok && !lc.expires.IsZero() {
		return context.WithValue(ctx, spareKey{}, true)
	}
	return ctx
}

// limitRequests applies the per-request limits ahead of h. On a spare
// connection it answers /healthz (through h) and a 503 UNAVAILABLE with
// Retry-After to anything else, and closes the connection after. It
// cuts a request whose body sends nothing for bodyIdle.
func limitRequests(h http.Handler, bodyIdle time.Duration, log logrus.FieldLogger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if spare, _ := r.Context().Value(spareKey{}).(bool); spare {
			w.Header().Set("Connection", "close")
			if r.URL.Path != gateway.LivenessPath {
				w.Header().Set("Retry-After", "1")
				_ = errcode.ServeJSON(w, errcode.ErrorCodeUnavailable.WithMessage(
					"too many connections to the proxy (http.maxconnections); retry shortly"))
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		b := &progressBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: bodyIdle,
			log: log.WithFields(logrus.Fields{"method": r.Method, "path": r.URL.Path})}
		r.Body = b
		defer b.handlerDone()
		h.ServeHTTP(w, r)
	})
}

// progressBody is a request body that must make progress: each Read
// that waits on the client waits at most idle (a read deadline renewed
// before every Read, so time spent elsewhere, such as waiting on ECR
// while it takes the bytes already read, does not count). A body that
// stalls ends the exchange: nothing is answered on it (an answer now
// could only be one its handler wrote without the whole body, such as a
// 200 for a manifest never sent) and the connection is closed.
//
// It may be read from another goroutine than the handler's (the push
// passthrough's transport reads it), possibly after the handler
// returned: deadlines are set only while the handler runs and the body
// has not ended, for after that they are the server's (its read after
// the body's end, which cancels the request when it fails; its next
// request).
type progressBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	log  logrus.FieldLogger

	mu   sync.Mutex
	over bool // the body ended, or the handler returned
}

// Read implements io.Reader, within idle.
func (b *progressBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.over {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err == nil {
		return n, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over {
		return n, err
	}
	b.over = true
	if errors.Is(err, os.ErrDeadlineExceeded) {
		_ = b.rc.SetWriteDeadline(time.Now()) // no answer: the connection closes
		b.log.Infof("request body sent nothing for %v (http.bodyidletimeout): connection closed", b.idle)
		return n, fmt.Errorf("request body stalled for %v: %w", b.idle, err)
	}
	_ = b.rc.SetReadDeadline(time.Time{})
	return n, err
}

// handlerDone is called as the handler returns. If the body has not
// ended, the server discards up to 256 KiB of it before reusing the
// connection: within idle too.
func (b *progressBody) handlerDone() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.over {
		b.over = true
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
}
