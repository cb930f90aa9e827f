package pushthrough_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/gateway"
	"github.com/ecr-proxy/ecr-proxy/pushthrough"
)

// readyz asks the gateway's readiness endpoint.
func readyz(t *testing.T, base string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+gateway.ReadinessPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestReadinessShowsWedgedUploads: while the upload sessions cannot be
// locked, the gateway's /readyz answers 503 and names the upload path.
func TestReadinessShowsWedgedUploads(t *testing.T) {
	t.Parallel()
	wt := pushthrough.NewWriteThrough()
	p, err := pushthrough.NewPassthrough("http://127.0.0.1:1", http.DefaultTransport, pushthrough.WithWriteThrough(wt))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(gateway.New(http.NotFoundHandler(), gateway.WithPassthrough(p)))
	t.Cleanup(gw.Close)
	status, body := readyz(t, gw.URL)
	if status != http.StatusOK || !strings.Contains(body, `"uploads":"ok"`) {
		t.Errorf("/readyz before: %d %s, want 200 with the uploads ok", status, body)
	}
	wt.LockSessions()
	status, body = readyz(t, gw.URL)
	wt.UnlockSessions()
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"uploads":"wedged"`) {
		t.Errorf("/readyz with the upload sessions locked: %d %s, want 503 naming the uploads", status, body)
	}
	status, body = readyz(t, gw.URL)
	if status != http.StatusOK {
		t.Errorf("/readyz once unlocked: %d %s", status, body)
	}
}
