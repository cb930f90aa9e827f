package ecrtest

import (
	"net/http"
	"net/http/httptest"
)

// handlerTransport is an http.RoundTripper that serves requests in process
// with a handler, without a listener. Responses are buffered: use it for
// writes and small reads only.
type handlerTransport struct {
	h http.Handler
}

var _ http.RoundTripper = handlerTransport{}

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if r.Host == "" {
		r.Host = req.URL.Host
	}
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:1"
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	if req.Body != nil {
		_ = req.Body.Close()
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}
