package ecrtest

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// loopServer is one HTTP server on a loopback address that can be closed
// and listened again on the same address (Down/Up).
type loopServer struct {
	name    string
	handler http.Handler
	serving *sync.WaitGroup

	mu   sync.Mutex
	addr string
	srv  *http.Server
}

func newLoopServer(name, addr string, h http.Handler, serving *sync.WaitGroup) *loopServer {
	return &loopServer{name: name, addr: addr, handler: h, serving: serving}
}

// listen starts serving; after the first call the resolved address (with
// its port) is reused, so a closed server comes back where it was.
func (s *loopServer) listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	if err := checkLoopback(s.addr); err != nil {
		return fmt.Errorf("listening for %s: %w", s.name, err)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listening for %s on %s: %w", s.name, s.addr, err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	s.srv = srv
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		_ = srv.Serve(ln) // returns http.ErrServerClosed after close
	}()
	return nil
}

// close closes the listener and every open connection.
func (s *loopServer) close() error {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", s.name, err)
	}
	return nil
}

func (s *loopServer) address() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// checkLoopback refuses listen addresses outside the loopback range.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("parsing address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	return nil
}
