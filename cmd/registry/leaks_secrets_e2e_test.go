package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// presignParam is a presigning parameter with its value.
var presignParam = regexp.MustCompile(`(?i)X-Amz-(Signature|Credential|Security-Token)=[^&\s"\\]+`)

// TestSecretsNeverLeakOnFailures drives the proxy through every way an
// upstream fails (S3 refused, dropped before its answer, hanging until
// the idle timeout, cut, expired; ECR 401, 403, 5xx; AWS refusing to
// mint) and checks that neither its whole log output (at debug level)
// nor what clients got holds a presigned URL's signature, credential or
// security token, nor any secret the emulator handed out.
func TestSecretsNeverLeakOnFailures(t *testing.T) {
	emu := ecrtest.New(t)
	dgst, _ := seedLayer(t, emu, "team/leak:v1", 64<<10)
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{
		LogLevel: "debug",
		ECRExtra: []string{"fetchidletimeout: 1s"},
	}})
	var bodies strings.Builder
	get := func(path string, wantFail bool) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			bodies.WriteString(err.Error())
			return
		}
		defer resp.Body.Close()
		b, rerr := io.ReadAll(resp.Body)
		bodies.Write(b)
		for k, v := range resp.Header {
			bodies.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
		if wantFail && resp.StatusCode < 300 && rerr == nil {
			t.Errorf("GET %s: %s, want a failure", path, resp.Status)
		}
	}
	blob := "/v2/team/leak/blobs/" + dgst
	steps := []struct {
		name      string
		fail, fix func()
		path      string
	}{
		{"S3 refused", func() { must(t, emu.DownS3()) }, func() { must(t, emu.UpS3()) }, blob},
		{"S3 drops before answering", func() { emu.BreakS3(ecrtest.S3Drops) }, func() { emu.BreakS3(ecrtest.S3Answers) }, blob},
		{"S3 hangs until the idle timeout", func() { emu.BreakS3(ecrtest.S3Hangs) }, func() { emu.BreakS3(ecrtest.S3Answers) }, blob},
		{"S3 cuts the body", func() { emu.CutBlobs(100) }, func() { emu.CutBlobs(-1) }, blob},
		{"ECR 401", func() { emu.FailRegistry(2, http.StatusUnauthorized) }, func() { emu.FailRegistry(0, 0) }, blob},
		{"ECR 403 on a manifest", func() { emu.FailRegistry(100, http.StatusForbidden) }, func() { emu.FailRegistry(0, 0) }, "/v2/team/leak/manifests/v1"},
		{"ECR 500", func() { emu.FailRegistry(1, http.StatusInternalServerError) }, func() { emu.FailRegistry(0, 0) }, blob},
		{"ECR 503 on a manifest", func() { emu.FailRegistry(100, http.StatusServiceUnavailable) }, func() { emu.FailRegistry(0, 0) }, "/v2/team/leak/manifests/v1"},
		{"AWS refuses to mint", func() { emu.DenyMints(100); emu.RevokeTokens() }, func() { emu.DenyMints(0) }, "/v2/team/leak/manifests/v1"},
	}
	for _, s := range steps {
		s.fail()
		get(s.path, true)
		s.fix()
	}
	out := p.Logs() + "\n" + bodies.String()
	if m := presignParam.FindAllString(out, 3); len(m) > 0 {
		t.Errorf("presigned URL parameters reached the log or a client: %q", m)
	}
	for _, s := range emu.Secrets() {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("secret %.6s… reached the log or a client", s)
		}
	}
	if !strings.Contains(p.Logs(), "blob download from upstream failed") {
		t.Error("the failures were not logged")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
