package ecrtest

import "net/http"

// S3Break is a way S3 fails before it answers a presigned URL.
type S3Break int

const (
	// S3Answers is S3 working (the default).
	S3Answers S3Break = iota
	// S3Drops accepts each request and closes its connection without
	// an answer.
	S3Drops
	// S3Hangs accepts each request and never answers it, until the
	// client gives up or the emulator closes.
	S3Hangs
)

// BreakS3 makes S3 fail every request the given way before any answer,
// until BreakS3(S3Answers). See also DownS3, for connections refused.
func (e *Emulator) BreakS3(b S3Break) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.s3Break = b
}

// DownS3 closes the S3 listener and its open connections, leaving the
// registry up: its redirects then lead to connection refused, until UpS3.
func (e *Emulator) DownS3() error { return e.s3.close() }

// UpS3 listens again on the address S3 had before DownS3.
func (e *Emulator) UpS3() error { return e.s3.listen() }

// breakS3 applies BreakS3 to one request and reports whether it did.
func (e *Emulator) breakS3(w http.ResponseWriter, r *http.Request) bool {
	e.mu.Lock()
	b := e.s3Break
	e.mu.Unlock()
	switch b {
	case S3Drops:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return true
	case S3Hangs:
		select {
		case <-r.Context().Done():
		case <-e.closing:
		}
		return true
	}
	return false
}

// ChunkBlobs makes S3 send blob bodies without Content-Length (chunked),
// so that their size is unknown until they end.
func (e *Emulator) ChunkBlobs(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.chunkBlobs = on
}
