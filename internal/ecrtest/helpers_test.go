package ecrtest_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/sirupsen/logrus"
)

func TestMain(m *testing.M) {
	// The embedded distribution registry logs every request through
	// logrus' standard logger.
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// noRedirect is a client that does not follow redirects.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// basic returns the Authorization value for a minted token.
func basic(t *testing.T, e *ecrtest.Emulator) string {
	t.Helper()
	user, pw, err := e.Token()
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends one request without following redirects.
func do(t *testing.T, method, url, auth string, body io.Reader, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
