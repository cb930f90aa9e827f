// Command floor is the benchmark's "floor" system: the least any cache
// that verifies what it serves must do for a blob, written as a minimal
// Go handler, so that the report shows the machine's limit beside the
// product. It is not the product and handles only what the benchmark's
// pulls ask:
//
//   - a cold blob: one upstream read (ECR's redirect followed to S3), one
//     SHA-256 pass and one disk write as the bytes arrive, one write to
//     the client; the last byte is held until the digest matched;
//   - a warm blob: the cached file with http.ServeContent (sendfile);
//   - everything else (/v2/, manifests) is passed to ECR with the token.
//
// No single flight, no Range on a miss, no LRU, no metrics, no push.
//
//	floor -upstream http://127.0.0.1:PORT -user AWS -password TOKEN -dir DIR
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	upstream := flag.String("upstream", "", "ECR registry URL")
	user := flag.String("user", "AWS", "registry user")
	password := flag.String("password", "", "registry password (an ECR token)")
	dir := flag.String("dir", "", "cache directory")
	flag.Parse()
	if err := run(*upstream, *user, *password, *dir); err != nil {
		log.Fatal(err)
	}
}

func run(upstream, user, password, dir string) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-upstream %q: want http(s)://host", upstream)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f := &floor{upstream: u, user: user, password: password, dir: dir, client: &http.Client{}}
	f.pass = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.SetBasicAuth(user, password)
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "msg=\"listening on %s\"\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type floor struct {
	upstream       *url.URL
	user, password string
	dir            string
	client         *http.Client
	pass           http.Handler
}

func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNSUPPORTED","message":"the floor serves pulls only"}]}`)
		return
	}
	i := strings.LastIndex(r.URL.Path, "/blobs/sha256:")
	if r.Method != http.MethodGet || i < 0 {
		f.pass.ServeHTTP(w, r)
		return
	}
	hexDigest := r.URL.Path[i+len("/blobs/sha256:"):]
	if _, err := hex.DecodeString(hexDigest); err != nil || len(hexDigest) != 64 {
		http.Error(w, "bad digest", http.StatusBadRequest)
		return
	}
	path := filepath.Join(f.dir, hexDigest)
	if file, err := os.Open(path); err == nil {
		defer file.Close()
		http.ServeContent(w, r, "", time.Time{}, file)
		return
	}
	f.miss(w, r, path, hexDigest)
}

// miss fetches the blob, writing and hashing it as it streams to the
// client, and keeps it if its digest matches.
func (f *floor) miss(w http.ResponseWriter, r *http.Request, path, hexDigest string) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, f.upstream.String()+r.URL.Path, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.SetBasicAuth(f.user, f.password) // Go drops it on the redirect to another host
	resp, err := f.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength < 1 {
		http.Error(w, resp.Status, http.StatusBadGateway)
		return
	}
	tmp, err := os.CreateTemp(f.dir, "tmp-*")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	sum := sha256.New()
	buf := make([]byte, 256<<10)
	var held []byte // the last byte, until the digest matched
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			_, _ = tmp.Write(chunk)
			sum.Write(chunk)
			if len(held) > 0 {
				_, _ = w.Write(held)
			}
			_, _ = w.Write(chunk[:n-1])
			held = append(held[:0], chunk[n-1])
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return // short of Content-Length: the client sees an error
		}
	}
	if hex.EncodeToString(sum.Sum(nil)) != hexDigest {
		return
	}
	_, _ = w.Write(held)
	if tmp.Close() == nil {
		_ = os.Rename(tmp.Name(), path)
	}
}
