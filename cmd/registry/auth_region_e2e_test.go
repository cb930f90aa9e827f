package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// TestRegionOfECRHostWinsOverAWSRegion (issue 14, item 4): ECS and
// CodeBuild set AWS_REGION to their own region, and a token minted there
// is refused by a registry in another region. With the registry host
// naming eu-west-1 and AWS_REGION=us-east-1, the proxy mints in eu-west-1
// (the emulator refuses requests signed for any other region), and says
// once, at start, which region it uses and why.
func TestRegionOfECRHostWinsOverAWSRegion(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t) // answers for its region only
	const other = "us-east-1"
	if emu.Region() == other {
		t.Fatalf("the emulator's region is %s; the test needs another", other)
	}
	host := emu.AccountID() + ".dkr.ecr." + emu.Region() + ".amazonaws.com"
	cfg, err := proxytest.WriteConfig(t.TempDir(), proxytest.ConfigOptions{
		RemoteURL:     "https://" + host,
		RootDirectory: t.TempDir(),
		// Nothing here should resolve the registry's name; if something
		// did, it would ask a closed loopback port, never a real server.
		ECRExtra: []string{"resolver: " + reservePort(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The seed's ECR variable would override proxy.remoteurl: it names
	// the same host.
	env := replaceEnv(replaceEnv(emu.Env(), "ECR", "https://"+host), "AWS_REGION", other)
	p, err := startProcess(t, []string{"serve", cfg}, env)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := p.WaitForToken(ctx); err != nil {
		t.Fatalf("with AWS_REGION=%s and the registry in %s: %v", other, emu.Region(), err)
	}
	if _, err := p.WaitForIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	note := "AWS_REGION " + other + " differs from " + emu.Region()
	lines := 0
	for _, l := range p.Lines() {
		if strings.Contains(l, note) {
			lines++
			if !strings.Contains(l, "minted in "+emu.Region()) || !strings.Contains(l, host) {
				t.Errorf("the note does not say which region is used for which host: %s", l)
			}
		}
	}
	if lines != 1 {
		t.Errorf("%d log lines say %q, want 1", lines, note)
	}
	if n := emu.Count(ecrtest.KindTokenMint); n != 1 {
		t.Errorf("mints = %d, want 1", n)
	}
}
