package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry"
	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v2"

	"github.com/ecr-proxy/ecr-proxy/pushthrough"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// ecrSettings is the "ecr" section of the configuration file, next to
// distribution's own sections.
type ecrSettings struct {
	// Region to mint tokens in; default the region in proxy.remoteurl,
	// then AWS_REGION, then AWS_DEFAULT_REGION (see auth.ChooseRegion).
	Region string `yaml:"region"`
	// RenewInterval is the longest a token is used before renewal.
	RenewInterval time.Duration `yaml:"renewinterval"`
	// Resolver is the DNS server (ip:port) used for upstream host names;
	// empty means the system resolver.
	Resolver string `yaml:"resolver"`
	// TrustedProxies are the CIDRs (or addresses) of the reverse proxies
	// and load balancers whose X-Forwarded-Proto and X-Forwarded-Host are
	// believed, for the upload Locations of pushes; from any other peer
	// these headers are ignored.
	TrustedProxies []string `yaml:"trustedproxies"`
	// TagTTL is the tag revalidation window: a tag resolved from ECR less
	// than this ago is served without asking ECR again. 0 asks every time.
	TagTTL time.Duration `yaml:"tagttl"`
	// SpoolDir holds blob downloads in flight; default: next to the
	// cache (filesystem drivers) or the system's temporary directory.
	SpoolDir string `yaml:"spooldir"`
	// FetchIdleTimeout abandons a blob download that receives nothing
	// for this long (default 1m); a slow but live one goes on.
	FetchIdleTimeout time.Duration `yaml:"fetchidletimeout"`
	// FetchMaxTime caps a whole blob download; 0 (default) sets no cap.
	FetchMaxTime time.Duration `yaml:"fetchmaxtime"`
	// Push is how writes reach ECR: "" (writes need the auth: section's
	// credentials; without one the start is refused), "anonymous" (without
	// an auth: section, anyone who reaches the port pushes with the
	// proxy's AWS identity) or "disabled" (writes are refused).
	Push string `yaml:"push"`
	// Advertise is the URL the other replicas of a cluster reach this one
	// at (cluster.go); default: the address it listens on.
	Advertise string `yaml:"advertise"`
	// AdvertiseCAs are PEM files of the CAs that sign the other replicas'
	// certificates, when they serve TLS at their advertised URLs; they
	// replace the system's CAs for forwards between replicas.
	AdvertiseCAs []string `yaml:"advertisecas"`
	// Delete is "enabled" to forward DELETE of manifests and blobs to ECR;
	// "" or "disabled" (the default) refuses them with 405.
	Delete string `yaml:"delete"`
	// Registries are several ECR registries, each under a repository
	// prefix; with them, proxy.remoteurl stays unset.
	Registries []registrySettings `yaml:"registries"`
}

// maxRenewInterval is the longest renewal interval, in the file and in
// RENEW_INTERVAL_HOURS alike: an ECR token lasts 12 hours.
const maxRenewInterval = 12 * time.Hour

// Push modes, as the start-up log names them.
const (
	pushAuthenticated = "authenticated"
	pushAnonymous     = "anonymous"
	pushDisabled      = "disabled"
)

// settings is the whole configuration of the serve command.
type settings struct {
	dist *configuration.Configuration
	ecr  ecrSettings
	// server holds ecr-proxy's own keys of the http section.
	server serverLimits
	// region is the resolved region (of the first registry).
	region string
	// upstreams are the registries served: one without a prefix
	// (proxy.remoteurl), or ecr.registries.
	upstreams []upstreamRegistry
	// registriesFromEnv says ECR_REGISTRIES set ecr.registries: errors
	// name its entries rather than the file's keys.
	registriesFromEnv bool
	// notes are messages for the log, once it is configured.
	notes []string
	// warnings are logged at warning level, once the log is configured.
	warnings []string
	// envOnly says there is no configuration file (the seed's mode).
	envOnly bool
	// push is the push mode (pushAuthenticated, pushAnonymous,
	// pushDisabled); deleteEnabled says DELETE is forwarded to ECR.
	push          string
	deleteEnabled bool
	// pprof says the debug address serves pprof and expvar too: yes for
	// http.debug.addr from a file (distribution's way), no for
	// METRICS_ADDR; DEBUG_PPROF decides either way.
	pprof bool
}

// configPath returns the configuration file named by args or by
// REGISTRY_CONFIGURATION_PATH, as distribution does, or "" when there is
// none and the seed's ECR variable configures the proxy alone.
func configPath(args []string, lookup lookupFunc) (string, error) {
	if len(args) > 0 {
		return args[0], nil
	}
	if p, ok := lookup("REGISTRY_CONFIGURATION_PATH"); ok && p != "" {
		return p, nil
	}
	for _, k := range []string{envECR, envECRRegistries} {
		if v, ok := lookup(k); ok && strings.TrimSpace(v) != "" {
			return "", nil
		}
	}
	return "", errors.New("no configuration: give a configuration file (or REGISTRY_CONFIGURATION_PATH), " +
		"or set ECR and PORT to configure the proxy from the environment")
}

// loadSettings reads the configuration file (path "" means the built-in
// base for environment-only use), applies the seed's variables and
// distribution's REGISTRY_* overrides, and checks everything ecr-proxy
// depends on. Errors name the key or variable and the value.
func loadSettings(path string, lookup lookupFunc) (*settings, error) {
	raw := []byte(envOnlyBase)
	source := "environment"
	if path != "" {
		var err error
		if raw, err = os.ReadFile(path); err != nil { //nolint:gosec // the operator's configuration file
			return nil, fmt.Errorf("read configuration: %w", err)
		}
		source = path
	}
	if err := checkKeys(raw); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	dist, err := configuration.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", source, err)
	}
	var doc struct {
		ECR  ecrSettings  `yaml:"ecr"`
		HTTP serverLimits `yaml:"http"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: sections ecr and http: %w", source, err)
	}
	s := &settings{dist: dist, ecr: doc.ECR, server: doc.HTTP, envOnly: path == "", pprof: true}
	env := &seedEnv{lookup: lookup}
	if err := env.apply(s, path == ""); err != nil {
		return nil, err
	}
	s.notes = env.notes
	if err := s.check(lookup); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return s, nil
}

// check validates the configuration; each error names the key and value.
func (s *settings) check(lookup lookupFunc) error {
	if len(s.ecr.Registries) > 0 {
		if s.dist.Proxy.RemoteURL != "" {
			return fmt.Errorf("%w (proxy.remoteurl %q)", errRemoteURLWithRegistries, s.dist.Proxy.RemoteURL)
		}
		s.dist.Proxy.RemoteURL = virtualUpstream
		s.notes = append(s.notes, virtualUpstreamNote)
	}
	p := s.dist.Proxy
	if p.RemoteURL == "" {
		return errors.New("proxy.remoteurl is required: the ECR registry URL, such as https://123456789012.dkr.ecr.eu-west-1.amazonaws.com")
	}
	u, err := url.Parse(p.RemoteURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("proxy.remoteurl %q: want https://<account>.dkr.ecr.<region>.amazonaws.com, with no path", p.RemoteURL)
	}
	if p.Username != "" || p.Password != "" {
		return errors.New("proxy.username and proxy.password must be empty: ecr-proxy mints ECR tokens itself from the AWS credential chain")
	}
	if p.Exec != nil {
		return fmt.Errorf("proxy.exec %q must be empty: ecr-proxy mints ECR tokens itself from the AWS credential chain", p.Exec.Command)
	}
	if bd, ok := s.dist.Storage["cache"]["blobdescriptor"]; ok && fmt.Sprint(bd) != "" {
		return fmt.Errorf("storage.cache.blobdescriptor %q must be unset: blobs leave the cache (eviction, TTL, garbage-collect) "+
			"behind a descriptor cache's back, and distribution then serves them as empty 200 responses", fmt.Sprint(bd))
	}
	if err := checkDriverValues(s.dist.Storage); err != nil {
		return err
	}
	if s.ecr.FetchIdleTimeout < 0 {
		return fmt.Errorf("ecr.fetchidletimeout %q: want a duration of 0 (the default, 1m) or more, such as 2m", s.ecr.FetchIdleTimeout)
	}
	if s.ecr.FetchMaxTime < 0 {
		return fmt.Errorf("ecr.fetchmaxtime %q: want a duration of 0 (no cap) or more, such as 2h", s.ecr.FetchMaxTime)
	}
	if s.ecr.TagTTL < 0 {
		return fmt.Errorf("ecr.tagttl %q: want a duration of 0 or more, such as 5m", s.ecr.TagTTL)
	}
	if s.ecr.RenewInterval < 0 || s.ecr.RenewInterval > maxRenewInterval {
		return fmt.Errorf("ecr.renewinterval %q: want a duration above 0 and at most 12h (ECR tokens last 12 hours), such as 6h "+
			"(%s takes the same, in hours)", s.ecr.RenewInterval, envRenewInterval)
	}
	if err := s.server.check(); err != nil {
		return err
	}
	if err := s.checkWrites(); err != nil {
		return err
	}
	if _, err := pushthrough.ParseTrustedProxies(s.ecr.TrustedProxies); err != nil {
		return fmt.Errorf("ecr.trustedproxies: %w", err)
	}
	awsRegion, _ := lookup("AWS_REGION")
	awsDefaultRegion, _ := lookup("AWS_DEFAULT_REGION")
	if err := s.checkRegistries(awsRegion, awsDefaultRegion); err != nil {
		return err
	}
	if err := s.checkS3(); err != nil {
		return err
	}
	return s.checkCluster()
}

// checkWrites sets the push mode and whether DELETE is forwarded. Writes
// are safe by default: DELETE only when enabled, and, with a
// configuration file, push without client authentication only when
// ecr.push says so. The seed's environment-only mode keeps its anonymous
// push, with a warning.
func (s *settings) checkWrites() error {
	switch s.ecr.Delete {
	case "", "disabled":
	case "enabled":
		s.deleteEnabled = true
	default:
		return fmt.Errorf("ecr.delete %q (%s): want enabled or disabled (the default)", s.ecr.Delete, envECRDelete)
	}
	hasAuth := s.dist.Auth.Type() != ""
	switch s.ecr.Push {
	case pushDisabled:
		s.push = pushDisabled
	case pushAnonymous, "":
		switch {
		case hasAuth:
			s.push = pushAuthenticated
		case s.ecr.Push == pushAnonymous:
			s.push = pushAnonymous
		case s.envOnly:
			s.push = pushAnonymous
			s.warnings = append(s.warnings, fmt.Sprintf("WARNING: anonymous push: anyone who reaches this port can push images to ECR "+
				"with the proxy's AWS identity. Set %s=disabled (ecr.push: disabled) to refuse writes, "+
				"or use a configuration file with an auth: section", envECRPush))
		default:
			return errors.New("ecr.push is unset and there is no auth: section: anyone who reaches the port could push to ECR " +
				"with the proxy's AWS identity. Add an auth: section, or set ecr.push: anonymous to allow it, or ecr.push: disabled")
		}
	default:
		return fmt.Errorf("ecr.push %q (%s): want anonymous or disabled, or leave it unset to require the auth: section", s.ecr.Push, envECRPush)
	}
	return nil
}

// driverParameters returns the parameters each storage driver of
// ecr-proxy reads; a key outside these stops the start (a misspelt maxsize
// would otherwise leave the cache unbounded).
func driverParameters() map[string][]string {
	return map[string][]string{
		lruDriver:    {"rootdirectory", "maxsize", "lowwater", "maxthreads"},
		"filesystem": {"rootdirectory", "maxthreads"},
		"inmemory":   {},
		s3Driver:     s3Parameters(),
	}
}

// storageSections returns the keys of the storage section that are not a
// driver.
func storageSections() []string {
	return []string{"cache", "delete", "maintenance", "redirect", "tag"}
}

// yamlUnmarshaler is the interface of types that decode themselves.
var yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// checkKeys fails on the first key of raw (the configuration file) that
// neither distribution nor ecr-proxy reads, naming its path and the
// nearest valid key.
func checkKeys(raw []byte) error {
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	var own struct {
		ECR  ecrSettings  `yaml:"ecr"`
		HTTP serverLimits `yaml:"http"`
	}
	types := []reflect.Type{reflect.TypeFor[configuration.Configuration](), reflect.TypeOf(own)}
	return walkKeys(doc, types, "")
}

// walkKeys checks the keys of node against the yaml fields of types
// (structs: a key is valid when one of them has it), and goes down
// into the values of the keys found.
func walkKeys(node any, types []reflect.Type, path string) error {
	m, ok := node.(map[any]any)
	if !ok {
		if list, ok := node.([]any); ok {
			for i, v := range list {
				if err := walkKeys(v, elemTypes(types), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if path == "storage" {
		return checkStorageKeys(m)
	}
	fields := map[string][]reflect.Type{}
	for _, t := range types {
		collectFields(t, fields)
	}
	if len(fields) == 0 {
		return nil // a map or free-form value: any key
	}
	for _, k := range sortedKeys(m) {
		sub, ok := fields[k]
		if !ok {
			return unknownKey(join(path, k), k, keysOf(fields))
		}
		if err := walkKeys(m[k], sub, join(path, k)); err != nil {
			return err
		}
	}
	return nil
}

// checkStorageKeys checks the storage section: its shared sections, and
// the parameters of the drivers whose parameters ecr-proxy knows.
func checkStorageKeys(m map[any]any) error {
	sections, drivers := storageSections(), driverParameters()
	valid := slices.Clone(sections)
	for d := range drivers {
		valid = append(valid, d)
	}
	for _, k := range sortedKeys(m) {
		params, known := drivers[k]
		if !known && !slices.Contains(sections, k) {
			if _, other := m[k].(map[any]any); other && nearest(k, valid) == "" {
				continue // another of distribution's drivers (s3, gcs...): its own parameters
			}
			return unknownKey("storage."+k, k, valid)
		}
		pm, _ := m[k].(map[any]any)
		for _, p := range sortedKeys(pm) {
			if known && !slices.Contains(params, p) {
				return unknownKey("storage."+k+"."+p, p, params)
			}
		}
	}
	return nil
}

// collectFields adds the yaml keys of struct type t (inline fields
// included) and their types to fields.
func collectFields(t reflect.Type, fields map[string][]reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(yamlUnmarshaler) {
		return // free-form, or decoded its own way
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			collectFields(f.Type, fields)
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml's default
		}
		fields[name] = append(fields[name], f.Type)
	}
}

// elemTypes returns the element types of the slice types among types.
func elemTypes(types []reflect.Type) []reflect.Type {
	var out []reflect.Type
	for _, t := range types {
		if t.Kind() == reflect.Slice {
			out = append(out, t.Elem())
		}
	}
	return out
}

// unknownKey is the error for an unknown key k at path.
func unknownKey(path, k string, valid []string) error {
	if n := nearest(k, valid); n != "" {
		return fmt.Errorf("unknown key %s: did you mean %q?", path, n)
	}
	return fmt.Errorf("unknown key %s: valid keys here are %s", path, strings.Join(valid, ", "))
}

// nearest returns the valid key closest to k in edit distance, or ""
// when none is within a third of its length (at least 2 edits).
func nearest(k string, valid []string) string {
	best, bestD := "", max(2, len(k)/3)+1
	for _, v := range valid {
		if d := editDistance(k, v); d < bestD {
			best, bestD = v, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, with an adjacent
// transposition counted as one edit.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// sortedKeys returns the keys of m as strings, sorted.
func sortedKeys(m map[any]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, fmt.Sprint(k))
	}
	sort.Strings(keys)
	return keys
}

// keysOf returns the keys of fields, sorted.
func keysOf(fields map[string][]reflect.Type) []string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// join appends key k to path.
func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// checkDriverValues checks the values of the lrufilesystem parameters
// that distribution would otherwise turn into a panic when it creates
// the driver; each error names the key and the value.
func checkDriverValues(st configuration.Storage) error {
	params, ok := st[lruDriver]
	if !ok {
		return nil
	}
	if v, ok := params["maxsize"]; ok && v != nil {
		var err error
		switch x := v.(type) {
		case string:
			_, err = lrufs.ParseSize(x)
		case int:
			if x < 0 {
				err = errors.New("negative")
			}
		default:
			err = fmt.Errorf("a %T", v)
		}
		if err != nil {
			return fmt.Errorf("storage.%s.maxsize %q: want a size such as 75g, 512m, 10240k or a number of bytes (%w)", lruDriver, fmt.Sprint(v), err)
		}
	}
	if v, ok := params["lowwater"]; ok && v != nil {
		t := strings.TrimSuffix(strings.TrimSpace(fmt.Sprint(v)), "%")
		f, err := strconv.ParseFloat(t, 64)
		if err != nil || f <= 0 || f > 100 {
			return fmt.Errorf("storage.%s.lowwater %q: want a fraction in (0, 1] such as 0.9, or a percentage such as 90%%", lruDriver, fmt.Sprint(v))
		}
	}
	return nil
}

// newRegistry is registry.NewRegistry, with the panics distribution
// raises on a storage driver's configuration errors turned into errors.
func newRegistry(ctx context.Context, cfg *configuration.Configuration) (reg *registry.Registry, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("storage.%s: %v", cfg.Storage.Type(), r)
		}
	}()
	return registry.NewRegistry(ctx, cfg)
}

// startupFields are the effective settings the start-up log states in one
// line: upstream, region, cache directory and bound, client auth, push and
// delete modes, metrics address and TLS.
func (s *settings) startupFields() logrus.Fields {
	params := s.dist.Storage.Parameters()
	bound := "unbounded"
	if v, ok := params["maxsize"]; ok && v != nil && fmt.Sprint(v) != "" && fmt.Sprint(v) != "0" {
		bound = fmt.Sprint(v)
	}
	if opts := redisLRUOptions(s.dist); len(opts) > 0 {
		if v, ok := opts[0]["maxsize"]; ok && v != nil && fmt.Sprint(v) != "" {
			bound = fmt.Sprint(v) + " (cluster-wide, redislru)"
		}
	}
	cache := s.dist.Storage.Type()
	if dir, ok := params["rootdirectory"]; ok {
		cache = fmt.Sprint(dir)
	}
	if loc, ok := s3Location(s.dist.Storage); ok {
		cache = loc
	}
	auth := s.dist.Auth.Type()
	if auth == "" {
		auth = "none"
	}
	deletes := "refused"
	if s.deleteEnabled {
		deletes = "forwarded"
	}
	metrics := "off"
	if d := s.dist.HTTP.Debug; d.Addr != "" && d.Prometheus.Enabled {
		path := d.Prometheus.Path
		if path == "" {
			path = "/metrics"
		}
		metrics = "http://" + d.Addr + path
	}
	tls := "off"
	if s.dist.HTTP.TLS.Certificate != "" || len(s.dist.HTTP.TLS.LetsEncrypt.Hosts) > 0 {
		tls = "on"
	}
	upstream, region := s.dist.Proxy.RemoteURL, s.region
	if len(s.ecr.Registries) > 0 {
		upstream, region = s.registriesSummary()
	}
	fields := logrus.Fields{
		"upstream": upstream, "region": region, "listen": s.dist.HTTP.Addr, "tls": tls,
		"cache": cache, "cache_max": bound, "auth": auth, "push": s.push, "delete": deletes, "metrics": metrics,
	}
	if len(s.ecr.Registries) > 0 {
		// What distribution's own start line names (virtualUpstreamNote).
		fields["virtual_upstream"] = virtualUpstream + " (never dialled)"
	}
	return fields
}
