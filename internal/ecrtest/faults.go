package ecrtest

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// stallState describes an active StallBlobs.
type stallState struct {
	after   int64
	release chan struct{}
}

// ThrottleMints makes the next n GetAuthorizationToken calls answer
// ThrottlingException (HTTP 400, "Rate exceeded"). The SDK's standard
// retryer retries these.
func (e *Emulator) ThrottleMints(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.throttleMints = n
}

// DenyMints makes the next n GetAuthorizationToken calls answer
// AccessDeniedException.
func (e *Emulator) DenyMints(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.denyMints = n
}

// DenyWebIdentity makes the next n AssumeRoleWithWebIdentity calls answer
// InvalidIdentityToken.
func (e *Emulator) DenyWebIdentity(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.denyWebIdentity = n
}

// FailRegistry makes the next n registry requests (any route; not S3)
// answer status before authentication. 429 and 503 carry Retry-After: 1.
func (e *Emulator) FailRegistry(n int, status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failRegistry = n
	e.failStatus = status
}

// CutBlobs makes S3 close the connection after afterBytes bytes of each
// blob body, while Content-Length still announces the full size. A
// negative value disables cutting.
func (e *Emulator) CutBlobs(afterBytes int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cutAfter = afterBytes
}

// CorruptBlobs makes S3 change the byte at offset atByte of each blob
// body it serves (counted from the start of the response body), keeping
// its length: the body is complete but fails its digest. A negative
// value, or one past the end of a body, leaves bodies intact.
func (e *Emulator) CorruptBlobs(atByte int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.corruptAt = atByte
}

// PaceBlobs makes S3 send blob bodies n bytes at a time, one write every
// interval: a slow but steady upstream. n of 0 or less sends at full
// speed.
func (e *Emulator) PaceBlobs(n int64, every time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.paceBytes, e.paceEvery = n, every
}

// StallBlobs makes S3 blob bodies stop after afterBytes bytes until release
// is called, the client goes away or the emulator closes. release disables
// stalling and resumes every stalled body; it may be called more than once.
func (e *Emulator) StallBlobs(afterBytes int64) (release func()) {
	st := &stallState{after: afterBytes, release: make(chan struct{})}
	e.mu.Lock()
	e.stall = st
	e.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			if e.stall == st {
				e.stall = nil
			}
			e.mu.Unlock()
			close(st.release)
		})
	}
}

// ExpirePresignedURLs makes every presigned S3 URL handed out so far answer
// 403 "Request has expired".
func (e *Emulator) ExpirePresignedURLs() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, p := range e.presigned {
		p.expired = true
		e.presigned[k] = p
	}
}

// Down closes the registry and S3 listeners and their open connections;
// clients get connection refused until Up. The AWS API server stays up.
func (e *Emulator) Down() error {
	return errors.Join(e.registry.close(), e.s3.close())
}

// Up listens again on the addresses the registry and S3 had before Down.
func (e *Emulator) Up() error {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := e.registry.listen(); err != nil {
		return err
	}
	return e.s3.listen()
}

// takeFault decrements *n and reports whether a fault applies.
func takeFault(n *int) bool {
	if *n <= 0 {
		return false
	}
	*n--
	return true
}

// manifestFault describes an active TamperManifests.
type manifestFault struct {
	padTo       int64 // pad manifest bodies with spaces to this size, digest announced to match
	wrongDigest bool  // change the body but announce the original digest
}

// TamperManifests changes the manifests the registry serves on GET:
// padTo > 0 pads each body with trailing spaces (still valid JSON) to
// padTo bytes and announces the digest of the padded body, as a registry
// holding a huge manifest would; wrongDigest adds a space to the body but
// announces the digest of the original, a body that does not match its
// Docker-Content-Digest. TamperManifests(0, false) serves them intact.
func (e *Emulator) TamperManifests(padTo int64, wrongDigest bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.manifestFault = manifestFault{padTo: padTo, wrongDigest: wrongDigest}
}

// serveTampered serves the backing registry's answer to r with fault
// applied to a successful body.
func serveTampered(w http.ResponseWriter, r *http.Request, backing http.Handler, fault manifestFault) {
	rec := httptest.NewRecorder()
	backing.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	if rec.Code == http.StatusOK {
		switch {
		case fault.padTo > int64(len(body)):
			body = append(body, bytes.Repeat([]byte(" "), int(fault.padTo)-len(body))...)
			w.Header().Set("Docker-Content-Digest", digest.FromBytes(body).String())
		case fault.wrongDigest:
			body = append(body, ' ')
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}
