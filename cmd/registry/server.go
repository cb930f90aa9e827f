package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/sirupsen/logrus"
)

// runServer serves handler (the chain distribution built, with the
// gateway outermost) as configured in http:, until SIGINT or SIGTERM,
// then drains for http.draintimeout.
//
// It replaces distribution's Registry.ListenAndServe, which loads the TLS
// certificate once: here the certificate and key files are watched and a
// renewed pair is used for new connections without a restart.
func runServer(ctx context.Context, cfg *configuration.Configuration, handler http.Handler, log logrus.FieldLogger) error {
	tlsConf, err := serverTLS(cfg.HTTP.TLS, log)
	if err != nil {
		return err
	}
	network := cfg.HTTP.Net
	if network == "" {
		network = "tcp"
	}
	ln, err := net.Listen(network, cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http.addr %q: %w", cfg.HTTP.Addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: time.Minute,
		TLSConfig:         tlsConf,
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

	stop, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-stop.Done():
	}
	log.Infof("stopping: draining connections for %v", cfg.HTTP.DrainTimeout)
	drain, cancelDrain := context.WithTimeout(context.WithoutCancel(ctx), cfg.HTTP.DrainTimeout)
	defer cancelDrain()
	if err := srv.Shutdown(drain); err != nil && !errors.Is(err, context.DeadlineExceeded) {
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
