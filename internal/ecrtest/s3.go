package ecrtest

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// presignedURL is a blob URL handed out in a 307.
type presignedURL struct {
	path      string
	repo      string
	digest    string
	expiresAt time.Time
	expired   bool // forced by ExpirePresignedURLs
}

// errBodyCut is returned to the blob server once CutBlobs closed the connection.
var errBodyCut = errors.New("blob body cut by emulator")

// presign returns a presigned-style S3 URL for one blob of one repository.
// The signature is random; the emulator remembers it.
func (e *Emulator) presign(repo, digest string) (string, error) {
	sig, err := randomHex(32)
	if err != nil {
		return "", err
	}
	session, err := randomHex(48)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.clock()
	for k, p := range e.presigned { // forget stale URLs
		if now.After(p.expiresAt.Add(time.Hour)) {
			delete(e.presigned, k)
		}
	}
	path := fmt.Sprintf("/prod-%s-starport-layer-bucket/%s/%s/%s", e.cfg.region, e.cfg.accountID, repo, digest)
	e.presigned[sig] = presignedURL{path: path, repo: repo, digest: digest, expiresAt: now.Add(e.cfg.presignExpiry)}
	q := url.Values{}
	q.Set("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
	q.Set("X-Amz-Credential", fmt.Sprintf("ASIAEMULATORSTARPORT/%s/%s/s3/aws4_request", now.UTC().Format("20060102"), e.cfg.region))
	q.Set("X-Amz-Date", now.UTC().Format("20060102T150405Z"))
	q.Set("X-Amz-Expires", strconv.Itoa(int(e.cfg.presignExpiry/time.Second)))
	q.Set("X-Amz-SignedHeaders", "host")
	q.Set("X-Amz-Security-Token", session)
	q.Set("X-Amz-Signature", sig)
	host := e.s3.address()
	if e.cfg.s3URLHost != "" {
		if _, port, err := net.SplitHostPort(host); err == nil {
			host = net.JoinHostPort(e.cfg.s3URLHost, port)
		}
	}
	u := url.URL{Scheme: "http", Host: host, Path: path, RawQuery: q.Encode()}
	return u.String(), nil
}

// serveS3 serves presigned blob URLs like S3: no Authorization header
// allowed, 403 for unknown or expired signatures, Range supported.
func (e *Emulator) serveS3(w http.ResponseWriter, r *http.Request) {
	e.count(KindS3GET)
	if e.breakS3(w, r) {
		return
	}
	if r.Header.Get("Authorization") != "" {
		writeS3Error(w, http.StatusBadRequest, s3Error{
			Code:         "InvalidArgument",
			Message:      "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
			ArgumentName: "Authorization",
		})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeS3Error(w, http.StatusMethodNotAllowed, s3Error{Code: "MethodNotAllowed", Message: "The specified method is not allowed against this resource."})
		return
	}
	e.mu.Lock()
	p, ok := e.presigned[r.URL.Query().Get("X-Amz-Signature")]
	now := e.cfg.clock()
	cutAfter, corruptAt, stall, chunked := e.cutAfter, e.corruptAt, e.stall, e.chunkBlobs
	pace := pacing{bytes: e.paceBytes, every: e.paceEvery}
	e.mu.Unlock()
	if !ok || p.path != r.URL.Path {
		writeS3Error(w, http.StatusForbidden, s3Error{Code: "AccessDenied", Message: "Access Denied"})
		return
	}
	if p.expired || !now.Before(p.expiresAt) {
		writeS3Error(w, http.StatusForbidden, s3Error{Code: "AccessDenied", Message: "Request has expired"})
		return
	}

	inner, err := http.NewRequestWithContext(r.Context(), r.Method, "/v2/"+p.repo+"/blobs/"+p.digest, http.NoBody)
	if err != nil {
		writeS3Error(w, http.StatusInternalServerError, s3Error{Code: "InternalError", Message: err.Error()})
		return
	}
	inner.Host = e.RegistryHost()
	inner.RequestURI = inner.URL.RequestURI()
	for _, h := range []string{"Range", "If-Range", "If-None-Match", "If-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if v := r.Header.Get(h); v != "" {
			inner.Header.Set(h, v)
		}
	}
	bw := &blobWriter{ResponseWriter: w, ctx: r.Context(), closing: e.closing, cutAfter: cutAfter, corruptAt: corruptAt, stall: stall, pace: pace, chunked: chunked}
	e.backing.ServeHTTP(bw, inner)
}

// blobWriter turns the registry's blob response into an S3 one and applies
// CutBlobs, CorruptBlobs, PaceBlobs and StallBlobs.
type blobWriter struct {
	http.ResponseWriter
	ctx         context.Context
	closing     <-chan struct{}
	cutAfter    int64
	corruptAt   int64
	pace        pacing
	stall       *stallState
	chunked     bool // ChunkBlobs: no Content-Length
	written     int64
	wroteHeader bool
	aborted     bool
}

func (b *blobWriter) WriteHeader(code int) {
	if b.wroteHeader {
		return
	}
	b.wroteHeader = true
	h := b.Header()
	h.Del(apiVersionHeader)
	h.Del("Docker-Content-Digest")
	h.Set("Server", "AmazonS3")
	if b.chunked {
		h.Del("Content-Length")
	}
	b.ResponseWriter.WriteHeader(code)
}

func (b *blobWriter) Write(p []byte) (int, error) {
	if b.aborted {
		return 0, errBodyCut
	}
	if !b.wroteHeader {
		b.WriteHeader(http.StatusOK)
	}
	total := 0
	if st := b.stall; st != nil && b.written+int64(len(p)) > st.after {
		k := max(st.after-b.written, 0)
		n, err := b.write(p[:k])
		total += n
		if err != nil {
			return total, err
		}
		_ = http.NewResponseController(b.ResponseWriter).Flush()
		select {
		case <-st.release:
		case <-b.ctx.Done():
			return total, fmt.Errorf("stalled blob: %w", b.ctx.Err())
		case <-b.closing:
			return total, ErrClosed
		}
		b.stall = nil
		p = p[k:]
	}
	if b.cutAfter >= 0 && b.written+int64(len(p)) > b.cutAfter {
		k := max(b.cutAfter-b.written, 0)
		n, err := b.write(p[:k])
		total += n
		b.aborted = true
		rc := http.NewResponseController(b.ResponseWriter)
		_ = rc.Flush()
		if conn, _, herr := rc.Hijack(); herr == nil {
			_ = conn.Close()
		}
		if err != nil {
			return total, err
		}
		return total, errBodyCut
	}
	n, err := b.paced(p)
	return total + n, err
}

// paced writes p at most pace.bytes at a time, one write per pace.every,
// flushing each: a slow but steady body.
func (b *blobWriter) paced(p []byte) (int, error) {
	if b.pace.bytes <= 0 {
		return b.write(p)
	}
	total := 0
	for len(p) > 0 {
		k := min(int64(len(p)), b.pace.bytes)
		n, err := b.write(p[:k])
		total += n
		if err != nil {
			return total, err
		}
		_ = http.NewResponseController(b.ResponseWriter).Flush()
		p = p[k:]
		t := time.NewTimer(b.pace.every)
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return total, fmt.Errorf("paced blob: %w", b.ctx.Err())
		case <-b.closing:
			t.Stop()
			return total, ErrClosed
		}
	}
	return total, nil
}

// pacing is an active PaceBlobs.
type pacing struct {
	bytes int64
	every time.Duration
}

func (b *blobWriter) write(p []byte) (int, error) {
	if at := b.corruptAt - b.written; at >= 0 && at < int64(len(p)) {
		changed := append([]byte(nil), p...)
		changed[at] ^= 0xff
		p = changed
	}
	n, err := b.ResponseWriter.Write(p)
	b.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (b *blobWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

type s3Error struct {
	XMLName      xml.Name `xml:"Error"`
	Code         string   `xml:"Code"`
	Message      string   `xml:"Message"`
	ArgumentName string   `xml:"ArgumentName,omitempty"`
	RequestID    string   `xml:"RequestId"`
	HostID       string   `xml:"HostId"`
}

func writeS3Error(w http.ResponseWriter, status int, e s3Error) {
	e.RequestID = "EMULATOR0000000"
	e.HostID = "ecrtest"
	body, _ := xml.Marshal(e)
	body = append([]byte(xml.Header), body...)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
