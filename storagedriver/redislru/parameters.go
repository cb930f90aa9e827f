package redislru

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/logx"
	"github.com/ecr-proxy/ecr-proxy/internal/redisstate"
	"github.com/ecr-proxy/ecr-proxy/storagedriver/lrufs"
)

// Defaults of the options.
const (
	DefaultPrefix        = "ecr-proxy"
	DefaultLowWater      = 0.9
	DefaultTouchInterval = 10 * time.Second
	DefaultEvictGrace    = time.Minute
	// DefaultRetryInterval is how long the driver leaves Redis alone
	// after a failed call.
	DefaultRetryInterval = 5 * time.Second
	// DefaultOpTimeout bounds one Redis call.
	DefaultOpTimeout = 2 * time.Second
	// DefaultLeaseTTL is the eviction lease's deadline, renewed per victim.
	DefaultLeaseTTL = 30 * time.Second
	// DefaultReserveTTL is the deadline of a write's reservation,
	// renewed at a third of it while the write goes on: the reservation
	// of a replica killed mid-write stops counting after it.
	DefaultReserveTTL = time.Minute
)

// Parameters configure a Driver. Zero values mean the defaults.
type Parameters struct {
	// MaxSize bounds the bytes of blob data in the whole cache; required.
	MaxSize int64
	// LowWater is the fraction of MaxSize eviction frees down to.
	LowWater float64
	// Prefix starts every Redis key of this cache.
	Prefix string
	// TouchInterval is how often one replica records a use of one blob;
	// negative records every use.
	TouchInterval time.Duration
	// EvictGrace protects blobs used less than this ago from eviction;
	// negative protects none.
	EvictGrace time.Duration
	// RetryInterval, OpTimeout, LeaseTTL and ReserveTTL: see the defaults.
	RetryInterval, OpTimeout, LeaseTTL, ReserveTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives what no caller sees (Redis lost and back,
	// evictions); nil discards.
	Logger logrus.FieldLogger
	// OnEvict, if set, is called with the size of each blob this replica
	// evicts (for metrics); it must not block.
	OnEvict func(bytes int64)
	// State, if set, is the replica's one record of whether Redis
	// answers, shared with its other users of Redis so that the loss is
	// logged once; nil gives the driver its own (Logger, RetryInterval).
	State *redisstate.State
}

// lostMessage says what goes on without Redis, for the driver's own State.
const lostMessage = "the shared cache goes on without its index (no cluster-wide bound) until it answers"

// optionKeys are the middleware options FromOptions reads.
var optionKeys = []string{"evictgrace", "lowwater", "maxsize", "prefix", "touchinterval"}

// FromOptions parses the middleware options of the configuration
// (middleware.storage[].options); each error names the option and value.
func FromOptions(options map[string]any) (Parameters, error) {
	var p Parameters
	keys := make([]string, 0, len(options))
	for k := range options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(optionKeys, k) {
			return Parameters{}, fmt.Errorf("unknown option %s: valid options are %s", k, strings.Join(optionKeys, ", "))
		}
	}
	v, ok := options["maxsize"]
	if !ok || v == nil || fmt.Sprint(v) == "" {
		return Parameters{}, errors.New("option maxsize is required: the bound of the shared cache, such as 500g")
	}
	n, err := parseSize(v)
	if err != nil || n <= 0 {
		return Parameters{}, fmt.Errorf("option maxsize %q: want a size above 0 such as 500g, 512m or a number of bytes", fmt.Sprint(v))
	}
	p.MaxSize = n
	if v, ok := options["lowwater"]; ok && v != nil {
		t := strings.TrimSpace(fmt.Sprint(v))
		pct := strings.HasSuffix(t, "%")
		f, err := strconv.ParseFloat(strings.TrimSuffix(t, "%"), 64)
		if pct || f > 1 {
			f /= 100
		}
		if err != nil || f <= 0 || f > 1 {
			return Parameters{}, fmt.Errorf("option lowwater %q: want a fraction in (0, 1] such as 0.9, or a percentage such as 90%%", t)
		}
		p.LowWater = f
	}
	if v, ok := options["prefix"]; ok && v != nil {
		if p.Prefix = fmt.Sprint(v); p.Prefix == "" {
			return Parameters{}, errors.New("option prefix: must not be empty")
		}
	}
	for _, d := range []struct {
		key string
		to  *time.Duration
	}{{"touchinterval", &p.TouchInterval}, {"evictgrace", &p.EvictGrace}} {
		v, ok := options[d.key]
		if !ok || v == nil {
			continue
		}
		if *d.to, err = parseDuration(v); err != nil || *d.to < 0 {
			return Parameters{}, fmt.Errorf("option %s %q: want a duration such as 10s, or 0", d.key, fmt.Sprint(v))
		}
		if *d.to == 0 {
			*d.to = -1 // explicitly none
		}
	}
	return p, nil
}

// parseSize reads a size: an integer of bytes or an lrufs.ParseSize string.
func parseSize(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case string:
		return lrufs.ParseSize(x)
	}
	return 0, fmt.Errorf("a %T", v)
}

// parseDuration reads a duration string or a time.Duration.
func parseDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case time.Duration:
		return x, nil
	case int:
		if x == 0 {
			return 0, nil
		}
	case string:
		return time.ParseDuration(x)
	}
	return 0, fmt.Errorf("a %T", v)
}

// withDefaults fills in the zero fields.
func (p Parameters) withDefaults() Parameters {
	if p.LowWater == 0 {
		p.LowWater = DefaultLowWater
	}
	if p.Prefix == "" {
		p.Prefix = DefaultPrefix
	}
	if p.TouchInterval == 0 {
		p.TouchInterval = DefaultTouchInterval
	}
	if p.EvictGrace == 0 {
		p.EvictGrace = DefaultEvictGrace
	}
	if p.RetryInterval == 0 {
		p.RetryInterval = DefaultRetryInterval
	}
	if p.OpTimeout == 0 {
		p.OpTimeout = DefaultOpTimeout
	}
	if p.LeaseTTL == 0 {
		p.LeaseTTL = DefaultLeaseTTL
	}
	if p.ReserveTTL == 0 {
		p.ReserveTTL = DefaultReserveTTL
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Logger == nil {
		p.Logger = logx.Discard()
	}
	if p.State == nil {
		p.State = redisstate.New(p.Logger, lostMessage, p.RetryInterval, p.Now)
	}
	return p
}
