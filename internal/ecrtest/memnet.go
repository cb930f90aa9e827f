package ecrtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// MemNet serves the emulator's registry, S3 and AWS API over in-memory
// connections (net.Pipe) instead of its loopback sockets: requests go
// through a real net/http client and a real net/http server, only the
// socket is replaced. Its purpose is testing/synctest: created inside a
// bubble, every goroutine it starts (servers, connections) belongs to the
// bubble and is durably blocked while idle, so that fake time advances,
// and the emulator's handlers read the bubble's clock (unless WithClock set
// another). Faults and counters apply as on the loopback servers; Down and
// Up do not affect it. Close it before the bubble ends.
type MemNet struct {
	e         *Emulator
	servers   map[string]*memServer // by dial address
	s3Port    string
	transport *http.Transport
}

// memServer is one http.Server on an in-memory listener.
type memServer struct {
	srv *http.Server
	ln  *memListener
}

// InMemory starts in-memory servers for the emulator's registry, S3 and
// AWS API (see MemNet). Addresses are those of the loopback servers:
// RegistryURL, S3URL (and presigned URLs) and APIURL work unchanged with
// MemNet's Transport.
func (e *Emulator) InMemory() *MemNet {
	m := &MemNet{e: e, servers: map[string]*memServer{}}
	for addr, h := range map[string]http.HandlerFunc{
		e.registry.address(): e.serveRegistry,
		e.s3.address():       e.serveS3,
		e.api.address():      e.serveAPI,
	} {
		ln := &memListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, ErrorLog: log.New(io.Discard, "", 0)}
		go func() { _ = srv.Serve(ln) }() // returns once Close closed ln
		m.servers[addr] = &memServer{srv: srv, ln: ln}
	}
	_, m.s3Port, _ = net.SplitHostPort(e.s3.address())
	m.transport = &http.Transport{
		DialContext:       m.dial,
		ForceAttemptHTTP2: false,
		MaxIdleConns:      100,
		IdleConnTimeout:   90 * time.Second,
	}
	return m
}

// Transport returns the RoundTripper that reaches the in-memory servers;
// it dials nothing else.
func (m *MemNet) Transport() *http.Transport { return m.transport }

// Client returns an http.Client on Transport (following redirects, so
// blob GETs reach S3 as with the loopback servers).
func (m *MemNet) Client() *http.Client { return &http.Client{Transport: m.transport} }

// Close closes the servers, their connections and the idle connections of
// Transport, and waits for nothing else: once it returns, no goroutine of
// MemNet is left blocked.
func (m *MemNet) Close() error {
	var errs []error
	for _, s := range m.servers {
		errs = append(errs, s.srv.Close())
	}
	m.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// dial connects to the in-memory server at addr. S3 is also reached by
// the host of WithS3URLHost, on its port.
func (m *MemNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	s, ok := m.servers[addr]
	if !ok && m.e.cfg.s3URLHost != "" && addr == net.JoinHostPort(m.e.cfg.s3URLHost, m.s3Port) {
		s, ok = m.servers[m.e.s3.address()], true
	}
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: "memory", Err: fmt.Errorf("no in-memory emulator server at %s", addr)}
	}
	return s.ln.connect(ctx)
}

// memListener is a net.Listener whose connections are net.Pipe ends.
type memListener struct {
	addr  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

var _ net.Listener = (*memListener)(nil)

func (l *memListener) connect(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
	}
	_ = client.Close()
	_ = server.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, &net.OpError{Op: "dial", Net: "memory", Err: net.ErrClosed}
}

// Accept implements net.Listener.
func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *memListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *memListener) Addr() net.Addr { return memAddr(l.addr) }

// memAddr is the address of an in-memory server.
type memAddr string

func (a memAddr) Network() string { return "memory" }
func (a memAddr) String() string  { return string(a) }
