package ecrtest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxAPIBody bounds request bodies read by the AWS API server.
const maxAPIBody = 1 << 20

// serveAPI routes the AWS API server: IMDS, container credentials, ECR
// (AWS JSON 1.1, by X-Amz-Target) and STS (query protocol).
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/latest/"):
		e.serveIMDS(w, r)
	case r.URL.Path == e.cfg.containerPath:
		e.serveContainerCredentials(w, r)
	case r.Method == http.MethodPost && r.Header.Get("X-Amz-Target") != "":
		e.serveECR(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/":
		e.serveSTS(w, r)
	default:
		e.count(KindAPIOther)
		http.NotFound(w, r)
	}
}

// readBody reads a bounded request body.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	if len(b) > maxAPIBody {
		return nil, fmt.Errorf("request body over %d bytes", maxAPIBody)
	}
	return b, nil
}

func newRequestID() string {
	id, err := randomHex(16)
	if err != nil {
		return "00000000-0000-0000-0000-000000000000"
	}
	return fmt.Sprintf("%s-%s-%s-%s-%s", id[0:8], id[8:12], id[12:16], id[16:20], id[20:32])
}
