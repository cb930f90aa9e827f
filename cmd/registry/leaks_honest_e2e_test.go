package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// requestLine is the gateway's request log line for path with status,
// or "" if there is none.
func requestLine(lines []string, path string, status string) string {
	for _, l := range lines {
		if strings.Contains(l, "msg=request") && strings.Contains(l, "component=gateway") &&
			strings.Contains(l, "status="+status+" ") && strings.Contains(l, path) {
			return l
		}
	}
	return ""
}

// TestUnavailableAnswerLogsTheUpstreamCause (issue 14, item 7): a read
// answered 503 UNAVAILABLE was logged by distribution as "manifest
// unknown"; the gateway's request line now says what ECR did.
func TestUnavailableAnswerLogsTheUpstreamCause(t *testing.T) {
	emu := ecrtest.New(t)
	dgst, _ := seedLayer(t, emu, "team/cause:1", 8<<10)
	p := startProxy(t, emu, proxyOpts{})

	emu.FailRegistry(100, http.StatusServiceUnavailable)
	status, _, _, body := getManifest(t, p, "team/cause", "1")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("cold manifest while ECR answers 503 = %d %q, want 503", status, body)
	}
	emu.FailRegistry(0, 0)
	must(t, emu.Down())
	resp := getBlob(t, p, "team/cause", dgst)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("cold blob while ECR is down = %d, want 503", resp.StatusCode)
	}

	must(t, p.Stop()) // its request lines are all written
	lines := p.Lines()
	l := requestLine(lines, "/v2/team/cause/manifests/1", "503")
	if !strings.Contains(l, "upstream_cause=") || !strings.Contains(l, "ECR answered 503") {
		t.Errorf("request line of the 503 manifest does not say ECR answered 503: %q", l)
	}
	l = requestLine(lines, "/v2/team/cause/blobs/"+dgst, "503")
	if !strings.Contains(l, "upstream_cause=") || !strings.Contains(l, "connection refused") {
		t.Errorf("request line of the 503 blob does not say the connection was refused: %q", l)
	}
}

// TestAbortedResponseOfUnknownSizePrintsNoStackTrace (issue 14, item 7):
// a blob whose upstream body has no length and fails its digest must
// reach the client as an error (the connection dropped before the end of
// the chunked body), and the proxy must log it without a stack trace.
func TestAbortedResponseOfUnknownSizePrintsNoStackTrace(t *testing.T) {
	// S3 answers HEAD too (chunked as well): no answer tells the size.
	emu := ecrtest.New(t, ecrtest.WithHEADRedirect(true))
	dgst, _ := seedLayer(t, emu, "team/abort:1", 64<<10)
	p := startProxy(t, emu, proxyOpts{})
	emu.ChunkBlobs(true)
	emu.CorruptBlobs(10)
	// Held until the client has the answer's headers, so that the download
	// fails while it is being served (a download that failed before would
	// be answered with an error status, not an aborted body).
	release := emu.StallBlobs(32 << 10)

	resp := getBlob(t, p, "team/abort", dgst)
	release()
	_, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Error("the client read a complete body of a blob that failed its digest")
	}
	must(t, p.Stop()) // all its output is in
	logs := p.Logs()
	for _, s := range []string{"goroutine ", "panic", "runtime/debug.Stack", ".go:"} {
		if strings.Contains(logs, s) {
			t.Errorf("the proxy log holds %q: a stack trace for an aborted response", s)
		}
	}
	if l := requestLine(p.Lines(), "/v2/team/abort/blobs/"+dgst, "200"); !strings.Contains(l, "aborted=true") {
		t.Errorf("the request line does not say the response was aborted: %q", l)
	}
}

// TestReferrersDuringOutageDoNotMentionPush (issue 14, item 7): a
// referrers list while ECR is unreachable was told to "retry the push
// later".
func TestReferrersDuringOutageDoNotMentionPush(t *testing.T) {
	emu := ecrtest.New(t)
	digest := seedImage(t, emu, "team/refs:1", 1, 4<<10, types.OCIManifestSchema1)
	p := startProxy(t, emu, proxyOpts{})
	must(t, emu.Down())
	resp, err := http.Get(p.URL() + "/v2/team/refs/referrers/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "UNAVAILABLE") {
		t.Fatalf("referrers while ECR is down = %d %q, want 503 UNAVAILABLE", resp.StatusCode, body)
	}
	if strings.Contains(strings.ToLower(string(body)), "push") {
		t.Errorf("referrers while ECR is down say %q: a read is not a push", body)
	}
}
