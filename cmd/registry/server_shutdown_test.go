package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// TestShutdownKeepsItsBudget: SIGTERM while a client streams a blob whose
// download from ECR is stalled, another sends a body that never ends and
// a third is idle between requests. The process exits within
// http.draintimeout, its whole shutdown budget (draining HTTP, then
// waiting for downloads), plus a margin for exiting: not twice it.
func TestShutdownKeepsItsBudget(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	const budget, margin = 3 * time.Second, 1500 * time.Millisecond
	dgst, _ := seedLayer(t, emu, "team/big:1", 4<<20)
	p := startProxy(t, emu, proxyOpts{config: proxytest.ConfigOptions{DrainTimeout: budget}})

	release := emu.StallBlobs(1 << 20)
	t.Cleanup(release)
	// A pull streaming the stalled download: the server must wait for it
	// while draining, and the download stays in flight.
	pull := getBlob(t, p, "team/big", dgst)
	t.Cleanup(func() { _ = pull.Body.Close() })
	if _, err := io.ReadFull(pull.Body, make([]byte, 64<<10)); err != nil {
		t.Fatalf("first bytes of the stalled blob: %v", err)
	}
	// An upload whose body stalls (within http.bodyidletimeout, 1m by
	// default), and an idle keep-alive connection.
	put, err := dialProxy(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(put, "PUT /v2/team/app/manifests/held HTTP/1.1\r\nHost: proxy\r\n"+
		"Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 4096\r\n\r\n{%s", strings.Repeat(" ", 99)); err != nil {
		t.Fatal(err)
	}
	idle, err := dialProxy(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := idle.get("/healthz"); err != nil || r.status != http.StatusOK {
		t.Fatalf("/healthz: %v %v", r, err)
	}

	start := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(start)
	if took > budget+margin {
		t.Errorf("SIGTERM to exit: %v, want at most http.draintimeout %v (+ %v)", took, budget, margin)
	}
	if !strings.Contains(p.Logs(), "stopping") {
		t.Errorf("no stopping line logged")
	}
	if !t.Failed() {
		t.Logf("figure: SIGTERM with a stalled download streaming to a client, a stalled upload body and an idle connection, draintimeout %v: exit after %v",
			budget, took.Round(10*time.Millisecond))
	}
}
