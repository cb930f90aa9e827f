package lrufs

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/base"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

const (
	defaultRootDirectory = "/var/lib/registry"
	defaultLowWater      = 0.9
	defaultMaxThreads    = uint64(100)
	minThreads           = uint64(25) // as distribution's filesystem driver
	defaultTouchInterval = time.Minute
)

// Parameters configures a Driver. The zero value of every field but
// RootDirectory means its default; FromParameters fills in the defaults
// explicitly.
type Parameters struct {
	// RootDirectory is where blobs and metadata are stored, exactly as with
	// distribution's filesystem driver. Default /var/lib/registry.
	RootDirectory string
	// MaxSize bounds the bytes of blob data (every
	// /docker/registry/v2/blobs/<alg>/<xx>/<hex>/data). 0 means unbounded.
	MaxSize int64
	// LowWater is the fraction of MaxSize that eviction frees down to, in
	// (0, 1]. 0 means 0.9.
	LowWater float64
	// MaxThreads bounds concurrent filesystem calls (distribution's
	// regulator). 0 means 100; values below 25 are raised to 25.
	MaxThreads uint64
	// Now returns the current time, used to order blobs. Nil means time.Now.
	Now func() time.Time
	// TouchInterval is how old a blob's recorded last use (its data file's
	// modification time) must be before a new use rewrites it. 0 means one
	// minute; a negative value records every use.
	TouchInterval time.Duration
	// Logger receives evictions and errors that no caller sees. Nil
	// discards.
	Logger logrus.FieldLogger
	// Registerer receives the Driver's metrics (see the package
	// documentation). Nil registers them nowhere; New never uses
	// prometheus.DefaultRegisterer unless given it here.
	Registerer prometheus.Registerer
}

// fromParametersImpl parses the untyped parameters of the storage section
// of distribution's configuration:
//
//   - rootdirectory: string, default /var/lib/registry
//   - maxsize: bytes as an integer or a ParseSize string ("75g"); 0 or unset
//     means unbounded
//   - lowwater: a fraction in (0, 1] ("0.9", 0.9), or a percentage in (1, 100]
//     (90, "90%"); default 0.9
//   - maxthreads: as distribution's filesystem driver
//   - metricsregisterer (RegistererParameter): a prometheus.Registerer,
//     set by the program (UseRegisterer), never by a configuration file
func fromParametersImpl(parameters map[string]any) (Parameters, error) {
	p := Parameters{
		RootDirectory: defaultRootDirectory,
		LowWater:      defaultLowWater,
		MaxThreads:    defaultMaxThreads,
	}
	if v, ok := parameters["rootdirectory"]; ok && v != nil {
		p.RootDirectory = fmt.Sprint(v)
		if p.RootDirectory == "" {
			return Parameters{}, fmt.Errorf("rootdirectory: must not be empty")
		}
	}
	if v, ok := parameters["maxsize"]; ok && v != nil {
		n, err := parseMaxSize(v)
		if err != nil {
			return Parameters{}, fmt.Errorf("maxsize %#v: %w", v, err)
		}
		p.MaxSize = n
	}
	if v, ok := parameters["lowwater"]; ok && v != nil {
		f, err := parseLowWater(v)
		if err != nil {
			return Parameters{}, fmt.Errorf("lowwater %#v: %w", v, err)
		}
		p.LowWater = f
	}
	n, err := base.GetLimitFromParameter(parameters["maxthreads"], minThreads, defaultMaxThreads)
	if err != nil {
		return Parameters{}, fmt.Errorf("maxthreads: %w", err)
	}
	p.MaxThreads = n
	if v, ok := parameters[RegistererParameter]; ok && v != nil {
		reg, ok := v.(prometheus.Registerer)
		if !ok {
			return Parameters{}, fmt.Errorf("%s: must be a prometheus.Registerer set by the program, not %T", RegistererParameter, v)
		}
		p.Registerer = reg
	}
	return p, nil
}

func parseMaxSize(v any) (int64, error) {
	switch x := v.(type) {
	case string:
		return ParseSize(x)
	case int:
		return nonNegative(int64(x))
	case int32:
		return nonNegative(int64(x))
	case int64:
		return nonNegative(x)
	case uint:
		return fromUint(uint64(x))
	case uint32:
		return fromUint(uint64(x))
	case uint64:
		return fromUint(x)
	case float64:
		if x < 0 || x != math.Trunc(x) || x >= math.MaxInt64 {
			return 0, fmt.Errorf("must be a non-negative whole number of bytes")
		}
		return int64(x), nil
	default:
		return 0, fmt.Errorf("must be a number of bytes or a size such as 75g, not %T", v)
	}
}

func nonNegative(n int64) (int64, error) {
	if n < 0 {
		return 0, fmt.Errorf("must not be negative")
	}
	return n, nil
}

func fromUint(n uint64) (int64, error) {
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("too large")
	}
	return int64(n), nil
}

func parseLowWater(v any) (float64, error) {
	var f float64
	switch x := v.(type) {
	case string:
		s := strings.TrimSpace(x)
		pct, isPct := strings.CutSuffix(s, "%")
		g, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil {
			return 0, fmt.Errorf("must be a fraction such as 0.9 or a percentage such as 90%%")
		}
		if isPct {
			g /= 100
			if g <= 0 || g > 1 {
				return 0, fmt.Errorf("must be in (0%%, 100%%]")
			}
			return g, nil
		}
		f = g
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	default:
		return 0, fmt.Errorf("must be a fraction or a percentage, not %T", v)
	}
	switch {
	case math.IsNaN(f) || f <= 0 || f > 100:
		return 0, fmt.Errorf("must be a fraction in (0, 1] or a percentage in (1, 100]")
	case f > 1:
		return f / 100, nil
	default:
		return f, nil
	}
}
