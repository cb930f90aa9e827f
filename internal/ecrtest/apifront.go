package ecrtest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// APIFront is one AWS API endpoint for several emulators, each a registry
// of its own account and region: an AWS SDK has one ECR and one STS
// endpoint (AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL_STS) for every region,
// as the real endpoints' names differ only by region. A signed request
// goes to the emulator of its SigV4 credential scope's region; an
// unsigned one (IMDS, container credentials, web identity) to the first
// emulator. Each emulator keeps its own registry and S3 listeners,
// tokens, faults and counters.
type APIFront struct {
	first    *Emulator
	byRegion map[string]*Emulator
	srv      *loopServer
	serving  sync.WaitGroup
}

// StartAPIFront serves the AWS API of emus (at least one, of distinct
// regions) on a loopback address. Close stops it, not the emulators.
func StartAPIFront(emus ...*Emulator) (*APIFront, error) {
	if len(emus) == 0 {
		return nil, fmt.Errorf("%w: API front without emulators", ErrBadConfig)
	}
	f := &APIFront{first: emus[0], byRegion: make(map[string]*Emulator, len(emus))}
	for _, e := range emus {
		if _, dup := f.byRegion[e.Region()]; dup {
			return nil, fmt.Errorf("%w: two emulators for region %s", ErrBadConfig, e.Region())
		}
		f.byRegion[e.Region()] = e
	}
	f.srv = newLoopServer("aws api front", defaultLoopbackListen, http.HandlerFunc(f.serve), &f.serving)
	if err := f.srv.listen(); err != nil {
		return nil, err
	}
	return f, nil
}

// NewAPIFront is StartAPIFront for tests: it fails t on error and
// registers Close with t.Cleanup.
func NewAPIFront(t testing.TB, emus ...*Emulator) *APIFront {
	t.Helper()
	f, err := StartAPIFront(emus...)
	if err != nil {
		t.Fatalf("starting AWS API front: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("closing AWS API front: %v", err)
		}
	})
	return f
}

// URL is the endpoint, for AWS_ENDPOINT_URL_ECR and AWS_ENDPOINT_URL_STS.
func (f *APIFront) URL() string { return "http://" + f.srv.address() }

// Env is the first emulator's Env with the ECR and STS endpoints set to
// the front.
func (f *APIFront) Env() []string {
	env := f.first.Env()
	for i, kv := range env {
		switch {
		case strings.HasPrefix(kv, "AWS_ENDPOINT_URL_ECR="):
			env[i] = "AWS_ENDPOINT_URL_ECR=" + f.URL()
		case strings.HasPrefix(kv, "AWS_ENDPOINT_URL_STS="):
			env[i] = "AWS_ENDPOINT_URL_STS=" + f.URL()
		}
	}
	return env
}

// Close stops the front and waits for its requests.
func (f *APIFront) Close() error {
	err := f.srv.close()
	f.serving.Wait()
	return err
}

func (f *APIFront) serve(w http.ResponseWriter, r *http.Request) {
	e := f.first
	if s, ok := parseSigV4(r.Header.Get("Authorization")); ok {
		if byRegion, ok := f.byRegion[s.region]; ok {
			e = byRegion
		}
	}
	e.api.handler.ServeHTTP(w, r)
}
