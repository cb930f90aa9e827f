package ecrtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sigFailure says why a SigV4 check failed; each API maps it to its own
// error code.
type sigFailure int

const (
	sigOK sigFailure = iota
	sigMissing
	sigUnknownKey
	sigBadScope
	sigMismatch
)

// sigV4 is a parsed Authorization header.
type sigV4 struct {
	accessKey     string
	date          string
	region        string
	service       string
	signedHeaders []string
	signature     string
}

func parseSigV4(h string) (sigV4, bool) {
	const prefix = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(h, prefix) {
		return sigV4{}, false
	}
	var s sigV4
	for _, part := range strings.Split(strings.TrimPrefix(h, prefix), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return sigV4{}, false
		}
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return sigV4{}, false
			}
			s.accessKey, s.date, s.region, s.service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			s.signedHeaders = strings.Split(v, ";")
		case "Signature":
			s.signature = v
		}
	}
	if s.accessKey == "" || s.signature == "" || len(s.signedHeaders) == 0 {
		return sigV4{}, false
	}
	return s, true
}

// verifySigV4 checks the request's SigV4 signature in full: known access
// key (with its session token for temporary keys), credential scope
// (region and service) and the signature itself, recomputed with the SDK's
// signer over the signed headers and body. The request time is not
// compared with the emulator's clock, so tests may move that clock freely.
func (e *Emulator) verifySigV4(ctx context.Context, r *http.Request, body []byte, service string) (identity, sigFailure) {
	s, ok := parseSigV4(r.Header.Get("Authorization"))
	if !ok {
		return identity{}, sigMissing
	}
	id, ok := e.lookupIdentity(s.accessKey)
	if !ok {
		return identity{}, sigUnknownKey
	}
	token := r.Header.Get("X-Amz-Security-Token")
	if token != id.sessionToken {
		return identity{}, sigUnknownKey
	}
	if s.region != e.cfg.region || s.service != service {
		return identity{}, sigBadScope
	}
	ts, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || ts.Format("20060102") != s.date {
		return identity{}, sigMismatch
	}

	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return identity{}, sigMismatch
	}
	req.Host = r.Host
	req.Header = http.Header{}
	req.ContentLength = 0
	for _, h := range s.signedHeaders {
		switch h {
		case "host", "x-amz-date", "x-amz-security-token":
			continue // the signer adds these
		case "content-length":
			req.ContentLength = int64(len(body))
			continue
		}
		for _, v := range r.Header.Values(h) {
			req.Header.Add(h, v)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: s.accessKey, SecretAccessKey: id.secret, SessionToken: id.sessionToken}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), service, s.region, ts); err != nil {
		return identity{}, sigMismatch
	}
	want, ok := parseSigV4(req.Header.Get("Authorization"))
	if !ok || subtle.ConstantTimeCompare([]byte(want.signature), []byte(s.signature)) != 1 {
		return identity{}, sigMismatch
	}
	return id, sigOK
}
