package auth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ecr-proxy/ecr-proxy/internal/redact"
	"github.com/ecr-proxy/ecr-proxy/internal/wire"
)

// tokenProvider is what Transport needs of a TokenSource.
type tokenProvider interface {
	Token(ctx context.Context) (Token, error)
	Invalidate(t Token)
	accepted(t Token)
}

var _ tokenProvider = (*TokenSource)(nil)

// maxPeek bounds how much of a 403 body is read to tell an expired token
// from other refusals.
const maxPeek = 4 << 10

// Transport is an http.RoundTripper that authenticates requests to one ECR
// registry host with the token of a TokenSource, replacing any
// Authorization header the caller set. The anonymous API version check
// (GET /v2/ without Authorization) is sent as it is, so that clients learn
// ECR's challenge. Requests to any other host pass through unchanged,
// except that an Authorization header is removed from presigned URLs (S3
// refuses a request with both).
type Transport struct {
	base     http.RoundTripper
	scheme   string
	host     string
	tokens   tokenProvider
	observer func(*http.Request, *http.Response, error)
}

var _ http.RoundTripper = (*Transport)(nil)

// TransportOption configures a Transport.
type TransportOption func(*Transport)

// WithBase sets the RoundTripper requests are sent with; the default is a
// clone of http.DefaultTransport taken when NewTransport runs.
func WithBase(rt http.RoundTripper) TransportOption {
	return func(t *Transport) {
		if rt != nil {
			t.base = rt
		}
	}
}

// WithRoundTripObserver sets a function called after every round trip to
// the registry host with its request and response (or error, also when no
// token could be had), such as a metrics recorder or a health tracker. It
// must neither block nor read the body.
func WithRoundTripObserver(f func(*http.Request, *http.Response, error)) TransportOption {
	return func(t *Transport) { t.observer = f }
}

// NewTransport returns a Transport for the registry at registryURL
// ("https://<account>.dkr.ecr.<region>.amazonaws.com"), taking tokens from
// tokens (a *TokenSource).
func NewTransport(registryURL string, tokens tokenProvider, opts ...TransportOption) (*Transport, error) {
	u, err := url.Parse(registryURL)
	if err != nil {
		return nil, fmt.Errorf("parse registry URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("registry URL %q: want http(s)://host[:port]", registryURL)
	}
	if tokens == nil {
		return nil, fmt.Errorf("new transport: nil token source")
	}
	t := &Transport{
		scheme:   u.Scheme,
		host:     wire.CanonicalHost(u),
		tokens:   tokens,
		observer: func(*http.Request, *http.Response, error) {},
	}
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t.base = dt.Clone()
	} else {
		t.base = http.DefaultTransport
	}
	for _, o := range opts {
		o(t)
	}
	return t, nil
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.forRegistry(req.URL) {
		if req.Header.Get("Authorization") != "" && isPresigned(req.URL) {
			req = req.Clone(req.Context())
			req.Header.Del("Authorization")
		}
		return t.base.RoundTrip(req)
	}
	if isVersionCheck(req) {
		// The anonymous API version check is how clients learn the auth
		// scheme; ECR answers it with its Basic challenge.
		resp, err := t.base.RoundTrip(req)
		t.observer(req, resp, err)
		return resp, err
	}
	tok, err := t.tokens.Token(req.Context())
	if err != nil {
		closeBody(req)
		err = fmt.Errorf("ECR credentials unavailable: %w", err)
		t.observer(req, nil, err)
		return nil, err
	}
	resp, err := t.send(req, tok)
	if err != nil {
		return resp, err
	}
	if !refused(req, resp) {
		t.accepted(tok, resp)
		return resp, nil
	}
	t.tokens.Invalidate(tok)
	if !replayable(req) {
		// The body is gone: the caller sees ECR's answer, and its retry
		// gets a fresh token.
		return resp, nil
	}
	fresh, err := t.tokens.Token(req.Context())
	if err != nil || fresh.same(tok) {
		// No better token to try: let the caller see ECR's answer.
		return resp, nil //nolint:nilerr // the response is the result
	}
	drain(resp)
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, fmt.Errorf("replay request body: %w", err)
		}
	}
	resp, err = t.send(retry, fresh)
	switch {
	case err != nil:
	case refused(req, resp):
		// The registry refuses the new token too: the token source backs
		// off (see TokenSource.Invalidate), the caller sees the refusal.
		t.tokens.Invalidate(fresh)
	default:
		t.accepted(fresh, resp)
	}
	return resp, err
}

// accepted tells the token source that the registry accepted tok, when
// resp shows it: an answer below 500 that is no refusal, and not 429,
// which a registry may send before it looks at the token.
func (t *Transport) accepted(tok Token, resp *http.Response) {
	if resp.StatusCode < http.StatusInternalServerError && resp.StatusCode != http.StatusTooManyRequests {
		t.tokens.accepted(tok)
	}
}

func (t *Transport) send(req *http.Request, tok Token) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", tok.BasicAuth())
	resp, err := t.base.RoundTrip(r)
	t.observer(req, resp, err)
	return resp, err
}

func (t *Transport) forRegistry(u *url.URL) bool {
	return u.Scheme == t.scheme && wire.CanonicalHost(u) == t.host
}

// RefusedToken reports whether an answer of the ECR registry refuses the
// token it was sent with: 401, or 403 for an expired token. Other 403s (an
// IAM policy denying a repository) do not. An answer to a HEAD (as
// resp.Request says) has no body to tell them apart, so there every 403
// counts as a refusal: one needless re-mint for a denied repository costs
// less than a HEAD that fails until some GET happens to renew the token.
// The part of the body read to tell is put back, so resp can still be
// passed on.
func RefusedToken(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return true
	case http.StatusForbidden:
		if resp.Request != nil && resp.Request.Method == http.MethodHead {
			return true
		}
		peek, err := io.ReadAll(io.LimitReader(resp.Body, maxPeek))
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(peek), resp.Body), resp.Body}
		if err != nil {
			return false
		}
		body := strings.ToLower(string(peek))
		return strings.Contains(body, "expired") || strings.Contains(body, "authorization token")
	default:
		return false
	}
}

// refused is RefusedToken for the answer to req, which need not be
// resp.Request: a base RoundTripper may leave that unset.
func refused(req *http.Request, resp *http.Response) bool {
	if req.Method == http.MethodHead && resp.StatusCode == http.StatusForbidden {
		return true
	}
	return RefusedToken(resp)
}

// isVersionCheck reports whether req is an anonymous GET /v2/.
func isVersionCheck(req *http.Request) bool {
	return req.Method == http.MethodGet && req.URL.Path == "/v2/" && req.Header.Get("Authorization") == ""
}

// replayable reports whether req can be sent again.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// isPresigned reports whether u carries a SigV4 query signature.
func isPresigned(u *url.URL) bool { return redact.IsPresigned(u) }

type readCloser struct {
	io.Reader
	io.Closer
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxPeek))
	_ = resp.Body.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
