package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"

	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// The variables of the nginx proxy ecr-proxy replaces (aws-ecr-http-proxy),
// so that its users keep their `docker run -e ...` line.
const (
	envECR            = "ECR"
	envPort           = "PORT"
	envResolver       = "RESOLVER"
	envCacheMaxSize   = "CACHE_MAX_SIZE"
	envCacheKey       = "CACHE_KEY"
	envCacheDir       = "CACHE_DIR"
	envRenewInterval  = "RENEW_INTERVAL_HOURS"
	envEnableSSL      = "ENABLE_SSL"
	envSSLKey         = "SSL_KEY"
	envSSLCertificate = "SSL_CERTIFICATE"
)

// Variables of ecr-proxy's own settings, for the seed's environment-only
// mode (they apply over a configuration file too).
const (
	envECRPush   = "ECR_PUSH"   // ecr.push: anonymous or disabled
	envECRDelete = "ECR_DELETE" // ecr.delete: enabled or disabled
	// envMetricsAddr serves Prometheus metrics (/metrics) and health
	// (/debug/health) on its own address: http.debug.addr.
	envMetricsAddr = "METRICS_ADDR"
	// envDebugPprof adds pprof and expvar to the debug address.
	envDebugPprof = "DEBUG_PPROF"
)

// Variables of ecr-proxy's own keys of the http section (serverLimits),
// which distribution's REGISTRY_HTTP_* overrides do not know.
const (
	envMaxConnections    = "HTTP_MAX_CONNECTIONS"
	envReadHeaderTimeout = "HTTP_READ_HEADER_TIMEOUT"
	envIdleTimeout       = "HTTP_IDLE_TIMEOUT"
	envBodyIdleTimeout   = "HTTP_BODY_IDLE_TIMEOUT"
)

// lruDriver is the storage driver the seed variables configure.
const lruDriver = "lrufilesystem"

// envOnlyBase is the configuration when no file is given: the seed's
// defaults (cache in /cache bounded to 75g, port 5000, 6 h renewal).
const envOnlyBase = `version: 0.1
log:
  level: info
  formatter: text
storage:
  lrufilesystem:
    rootdirectory: /cache
    maxsize: 75g
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
  redirect:
    disable: true
http:
  addr: :5000
  draintimeout: 30s
  headers:
    X-Content-Type-Options: [nosniff]
ecr:
  renewinterval: 6h
`

// lookupFunc reads one environment variable.
type lookupFunc func(key string) (string, bool)

// seedEnv is what the seed variables say, read and checked once.
type seedEnv struct {
	lookup lookupFunc
	// notes are messages to log once the logger is configured.
	notes []string
}

// get returns the trimmed value of key and whether it is set and non-empty.
func (e *seedEnv) get(key string) (string, bool) {
	v, ok := e.lookup(key)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// apply sets the keys the seed variables name, over the configuration
// read from the file or the built-in base. Each error names the variable
// and what it accepts. envOnly says there was no file: then ECR and PORT
// are required.
func (e *seedEnv) apply(s *settings, envOnly bool) error {
	cfg := s.dist
	if v, ok := e.get(envECR); ok {
		u, err := registryURL(v)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", envECR, v, err)
		}
		if err := e.conflict(envECR, "REGISTRY_PROXY_REMOTEURL"); err != nil {
			return err
		}
		cfg.Proxy.RemoteURL = u
	} else if _, regs := e.get(envECRRegistries); envOnly && !regs {
		return fmt.Errorf("%s is required: the ECR registry URL, such as https://123456789012.dkr.ecr.eu-central-1.amazonaws.com (or %s for several registries)", envECR, envECRRegistries)
	}

	if err := e.applyRegistriesEnv(s); err != nil {
		return err
	}

	if v, ok := e.get(envPort); ok {
		port, err := strconv.Atoi(v)
		if err != nil || port < 1 || port > 65535 {
			return fmt.Errorf("%s=%q: want a port number from 1 to 65535", envPort, v)
		}
		if err := e.conflict(envPort, "REGISTRY_HTTP_ADDR"); err != nil {
			return err
		}
		cfg.HTTP.Addr = ":" + v
	} else if envOnly {
		return fmt.Errorf("%s is required: the port the proxy listens on, such as 5000", envPort)
	}

	if err := e.applyShared(s); err != nil {
		return err
	}
	if err := e.applyCache(cfg); err != nil {
		return err
	}

	if v, ok := e.get(envCacheKey); ok {
		e.notes = append(e.notes, fmt.Sprintf("%s=%s: the cache is content-addressed (by digest), so every key means the same here, "+
			"and a layer shared by several repositories is stored once", envCacheKey, v))
	}

	if v, ok := e.get(envRenewInterval); ok {
		d, err := renewHours(v)
		if err != nil || d <= 0 || d > maxRenewInterval {
			return fmt.Errorf("%s=%q: want a number of hours above 0 and at most 12, or a duration such as 90m "+
				"(ECR tokens last 12 hours; ecr.renewinterval takes the same)", envRenewInterval, v)
		}
		s.ecr.RenewInterval = d
	}

	if v, ok := e.get(envResolver); ok {
		addr, err := resolverAddr(v)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", envResolver, v, err)
		}
		s.ecr.Resolver = addr
	}

	if v, ok := e.get(envECRPush); ok {
		s.ecr.Push = v
	}
	if v, ok := e.get(envECRDelete); ok {
		s.ecr.Delete = v
	}

	if err := e.applyMetrics(s); err != nil {
		return err
	}

	if err := e.applyServerLimits(&s.server); err != nil {
		return err
	}

	return e.applyTLS(cfg)
}

// applyMetrics maps METRICS_ADDR onto http.debug (metrics and health,
// without pprof) and DEBUG_PPROF onto whether pprof is served there too.
func (e *seedEnv) applyMetrics(s *settings) error {
	if v, ok := e.get(envMetricsAddr); ok {
		addr := v
		if _, err := strconv.Atoi(v); err == nil {
			addr = ":" + v
		}
		host, port, err := net.SplitHostPort(addr)
		if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > 65535 || (host != "" && net.ParseIP(host) == nil && host != "localhost") {
			return fmt.Errorf("%s=%q: want an address such as :9090, 127.0.0.1:9090 or a port number", envMetricsAddr, v)
		}
		if err := e.conflict(envMetricsAddr, "REGISTRY_HTTP_DEBUG_ADDR"); err != nil {
			return err
		}
		s.dist.HTTP.Debug.Addr = addr
		s.dist.HTTP.Debug.Prometheus.Enabled = true
		if s.dist.HTTP.Debug.Prometheus.Path == "" {
			s.dist.HTTP.Debug.Prometheus.Path = "/metrics"
		}
		s.pprof = false
	}
	if v, ok := e.get(envDebugPprof); ok {
		on, err := parseBool(v)
		if err != nil {
			return fmt.Errorf("%s=%q: want true or false", envDebugPprof, v)
		}
		s.pprof = on
	}
	return nil
}

// renewHours reads RENEW_INTERVAL_HOURS: a number of hours (6, 1.5) or,
// as ecr.renewinterval, a duration (6h, 90m).
func renewHours(v string) (time.Duration, error) {
	hours, err := strconv.ParseFloat(v, 64)
	if err != nil {
		d, derr := time.ParseDuration(v)
		if derr != nil {
			return 0, fmt.Errorf("not hours nor a duration: %w", derr)
		}
		return d, nil
	}
	return time.Duration(hours * float64(time.Hour)), nil
}

// applyServerLimits maps the HTTP_* variables onto the http section's
// limits: a duration (90s, 2m) or a whole number of seconds for the
// timeouts, a number for the cap.
func (e *seedEnv) applyServerLimits(l *serverLimits) error {
	if v, ok := e.get(envMaxConnections); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%s=%q: want a positive number of connections, such as 4096", envMaxConnections, v)
		}
		l.MaxConnections = n
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{
		{envReadHeaderTimeout, &l.ReadHeaderTimeout},
		{envIdleTimeout, &l.IdleTimeout},
		{envBodyIdleTimeout, &l.BodyIdleTimeout},
	} {
		v, ok := e.get(d.name)
		if !ok {
			continue
		}
		t, err := parseTimeout(v)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", d.name, v, err)
		}
		*d.to = t
	}
	return nil
}

// maxTimeoutSeconds bounds a timeout given in seconds (a day).
const maxTimeoutSeconds = 24 * 60 * 60

// parseTimeout reads a positive duration, or a whole number of seconds.
func parseTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, serr := strconv.Atoi(v)
		if serr != nil || secs > maxTimeoutSeconds {
			return 0, errors.New("want a duration such as 90s or 2m, or a number of seconds")
		}
		d = time.Duration(secs) * time.Second
	}
	if d <= 0 {
		return 0, errors.New("want a duration above 0, such as 90s or 2m")
	}
	return d, nil
}

// applyCache maps CACHE_DIR and CACHE_MAX_SIZE onto the storage driver.
func (e *seedEnv) applyCache(cfg *configuration.Configuration) error {
	dir, dirSet := e.get(envCacheDir)
	size, sizeSet := e.get(envCacheMaxSize)
	if !dirSet && !sizeSet {
		return nil
	}
	if sizeSet {
		if _, err := lrufs.ParseSize(size); err != nil {
			return fmt.Errorf("%s=%q: want a size such as 75g, 512m, 10240k or a number of bytes", envCacheMaxSize, size)
		}
	}
	driver := cfg.Storage.Type()
	params := cfg.Storage.Parameters()
	switch driver {
	case lruDriver:
	case s3Driver:
		if dirSet {
			return fmt.Errorf("%s does not apply to the shared %s cache (%s)", envCacheDir, s3Driver, envCacheS3Prefix)
		}
		return e.applyClusterBound(cfg, size)
	case "filesystem":
		if sizeSet {
			// Same layout on disk: bounding it is switching the driver.
			delete(cfg.Storage, "filesystem")
			cfg.Storage[lruDriver] = params
			e.notes = append(e.notes, fmt.Sprintf("%s: storage driver filesystem becomes %s (same layout, bounded size)", envCacheMaxSize, lruDriver))
		}
	default:
		return fmt.Errorf("%s and %s apply to the filesystem and %s storage drivers; the configuration uses %q",
			envCacheDir, envCacheMaxSize, lruDriver, driver)
	}
	if params == nil {
		params = configuration.Parameters{}
		cfg.Storage[cfg.Storage.Type()] = params
	}
	if dirSet {
		if !strings.HasPrefix(dir, "/") {
			return fmt.Errorf("%s=%q: want an absolute path", envCacheDir, dir)
		}
		params["rootdirectory"] = dir
	}
	if sizeSet {
		params["maxsize"] = size
	}
	return nil
}

// applyTLS maps ENABLE_SSL, SSL_KEY and SSL_CERTIFICATE onto http.tls.
func (e *seedEnv) applyTLS(cfg *configuration.Configuration) error {
	v, ok := e.get(envEnableSSL)
	if !ok {
		return nil
	}
	enabled, err := parseBool(v)
	if err != nil {
		return fmt.Errorf("%s=%q: want true or false (or 1/0, yes/no, on/off)", envEnableSSL, v)
	}
	e.notes = append(e.notes, fmt.Sprintf("%s=%s: TLS %s", envEnableSSL, v, map[bool]string{true: "on", false: "off"}[enabled]))
	if !enabled {
		return nil
	}
	key, keyOK := e.get(envSSLKey)
	cert, certOK := e.get(envSSLCertificate)
	if !keyOK || !certOK {
		return fmt.Errorf("%s=true needs %s (path of the PEM private key) and %s (path of the PEM certificate chain)",
			envEnableSSL, envSSLKey, envSSLCertificate)
	}
	for name, path := range map[string]string{envSSLKey: key, envSSLCertificate: cert} {
		if _, err := os.ReadFile(path); err != nil { //nolint:gosec // the operator's own file
			return fmt.Errorf("%s=%q: %w", name, path, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		return fmt.Errorf("%s=%q and %s=%q: not a matching PEM certificate and key: %w", envSSLCertificate, cert, envSSLKey, key, err)
	}
	cfg.HTTP.TLS.Certificate = cert
	cfg.HTTP.TLS.Key = key
	if cfg.HTTP.TLS.MinimumTLS == "" {
		cfg.HTTP.TLS.MinimumTLS = "tls1.2"
	}
	return nil
}

// conflict fails when the seed variable and distribution's override of the
// same key are both set: which one should win is not for us to guess.
func (e *seedEnv) conflict(seedVar, registryVar string) error {
	if _, ok := e.get(registryVar); ok {
		return fmt.Errorf("%s and %s both set the same key: keep one", seedVar, registryVar)
	}
	return nil
}

// registryURL checks an ECR registry URL: http(s), a host, no path.
func registryURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", errors.New("want a registry URL such as https://123456789012.dkr.ecr.eu-central-1.amazonaws.com (scheme and host, no path)")
	}
	return u.Scheme + "://" + u.Host, nil
}

// resolverAddr checks a DNS server address, adding port 53 when absent.
func resolverAddr(v string) (string, error) {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		host, port = strings.Trim(v, "[]"), "53"
	}
	if net.ParseIP(host) == nil {
		return "", errors.New("want the IP address of a DNS server, optionally with a port (8.8.8.8, 10.0.0.2:53, [fd00::2]:53)")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", errors.New("want a port from 1 to 65535")
	}
	return net.JoinHostPort(host, port), nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, errors.New("not a boolean")
}
