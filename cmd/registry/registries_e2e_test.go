package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// The second registry of the multi-registry tests: another account, in
// another region, reachable only through a role with an external ID.
const (
	prodAccount    = "210987654321"
	prodRegion     = "us-east-1"
	prodRole       = "arn:aws:iam::" + prodAccount + ":role/ecr-proxy-pull"
	prodExternalID = "ext-7"
)

// twoRegistries is a proxy serving "shared/" from registry a (the static
// key's account, eu-west-1) and "prod/" from registry b (another
// account, us-east-1, through prodRole), with one AWS API endpoint for
// both, as the SDK has.
type twoRegistries struct {
	a, b  *ecrtest.Emulator
	proxy *proxytest.Proxy
}

// newTwoEmulators starts registries a and b behind one AWS API endpoint,
// and returns the proxy's environment for it (without ECR).
func newTwoEmulators(t *testing.T) (a, b *ecrtest.Emulator, env []string) {
	t.Helper()
	a = ecrtest.New(t)
	b = ecrtest.New(t, ecrtest.WithRegion(prodRegion), ecrtest.WithAccountID(prodAccount),
		ecrtest.WithAssumedRoleOnly(prodRole, prodExternalID))
	front := ecrtest.NewAPIFront(t, a, b)
	for _, kv := range front.Env() {
		if !strings.HasPrefix(kv, "ECR=") {
			env = append(env, kv)
		}
	}
	return a, b, env
}

// settleTwo waits for both registries' first tokens and identity lookups.
func settleTwo(t *testing.T, p *proxytest.Proxy) {
	t.Helper()
	if _, err := p.WaitForLines(t.Context(), 2, func(l string) bool { return strings.Contains(l, "minted ECR token") }); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitForLines(t.Context(), 2, func(l string) bool {
		return strings.Contains(l, `msg="AWS identity"`) || strings.Contains(l, "could not determine the AWS identity")
	}); err != nil {
		t.Fatal(err)
	}
}

func startTwoRegistries(t *testing.T) *twoRegistries {
	t.Helper()
	return startTwoRegistriesWith(t, "")
}

// startTwoRegistriesWith is startTwoRegistries with extra top-level
// YAML sections in the configuration, and extra keys ("key: value") of
// registry b's entry.
func startTwoRegistriesWith(t *testing.T, extra string, prodKeys ...string) *twoRegistries {
	t.Helper()
	return startTwoRegistriesConfig(t, proxytest.ConfigOptions{Extra: extra}, prodKeys...)
}

// startTwoRegistriesConfig is startTwoRegistriesWith from base, whose
// RootDirectory and ECRExtra it sets.
func startTwoRegistriesConfig(t *testing.T, base proxytest.ConfigOptions, prodKeys ...string) *twoRegistries {
	t.Helper()
	a, b, env := newTwoEmulators(t)
	base.RootDirectory = t.TempDir()
	cfg, err := proxytest.WriteConfig(t.TempDir(), proxytest.ConfigOptions{
		RootDirectory: base.RootDirectory,
		Extra:         base.Extra,
		StorageDriver: base.StorageDriver,
		StorageParams: base.StorageParams,
		ECRExtra: append([]string{
			"registries:",
			"  - prefix: shared",
			"    url: " + a.RegistryURL(),
			"    region: " + a.Region(),
			"  - prefix: prod",
			"    url: " + b.RegistryURL(),
			"    region: " + b.Region(),
			"    role: " + prodRole,
			"    externalid: " + prodExternalID,
		}, prefixEach("    ", prodKeys)...),
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(t, []string{"serve", cfg}, env)
	if err != nil {
		t.Fatal(err)
	}
	settleTwo(t, p)
	return &twoRegistries{a: a, b: b, proxy: p}
}

// TestRegistriesFromTheContainerEnvironment: with no file, ECR_REGISTRIES
// configures both registries, the role and its external ID included.
func TestRegistriesFromTheContainerEnvironment(t *testing.T) {
	a, b, env := newTwoEmulators(t)
	digA := seedImage(t, a, "base/alpine:1", 1, 4<<10, types.OCIManifestSchema1)
	digB := seedImage(t, b, "app:1", 1, 4<<10, types.OCIManifestSchema1)
	env = append(env, "CACHE_DIR="+t.TempDir(), "ECR_PUSH=disabled",
		"ECR_REGISTRIES=shared="+a.RegistryURL()+",region="+a.Region()+
			"; prod="+b.RegistryURL()+",region="+b.Region()+",role="+prodRole+",externalid="+prodExternalID+",renewinterval=2")
	p, _ := startSeedProxy(t, func(port string) []string { return append(env, "PORT="+port) })
	settleTwo(t, p)
	mustPull(t, p, "shared/base/alpine:1", digA)
	mustPull(t, p, "prod/app:1", digB)
}

// TestRegistriesPullAndPushThroughEachPrefix: each prefix pulls its own
// registry's images with its own token, a tag of one registry is never
// served under the other's prefix, and a push goes to its prefix's
// registry. Each registry's identity is logged, b's the assumed role.
func TestRegistriesPullAndPushThroughEachPrefix(t *testing.T) {
	r := startTwoRegistries(t)
	digA := seedImage(t, r.a, "base/alpine:1", 2, 4<<10, types.OCIManifestSchema1)
	digB := seedImage(t, r.b, "app:1", 2, 4<<10, types.OCIManifestSchema1)

	mustPull(t, r.proxy, "shared/base/alpine:1", digA)
	mustPull(t, r.proxy, "prod/app:1", digB)
	if _, err := pullImage(t.Context(), r.proxy, "prod/base/alpine:1"); err == nil {
		t.Error("prod/base/alpine:1 pulled, but registry b has no base/alpine")
	}
	if _, err := pullImage(t.Context(), r.proxy, "shared/app:1"); err == nil {
		t.Error("shared/app:1 pulled, but registry a has no app")
	}

	for _, push := range []struct {
		prefix      string
		to, other   *ecrtest.Emulator
		wantPUTs    int
		otherBefore int
	}{{"prod", r.b, r.a, 1, 0}, {"shared", r.a, r.b, 1, 1}} {
		pushThrough(t, r.proxy, push.prefix, push.to)
		if n := push.to.Count(ecrtest.KindManifestPUT); n != push.wantPUTs {
			t.Errorf("push through %s: its registry got %d manifest PUTs, want %d", push.prefix, n, push.wantPUTs)
		}
		if n := push.other.Count(ecrtest.KindManifestPUT); n != push.otherBefore {
			t.Errorf("push through %s: the other registry got %d manifest PUTs, want %d", push.prefix, n, push.otherBefore)
		}
	}

	// Each pull's manifest and blob GETs (cold: misses) are counted under
	// its registry, the label of the upstream metrics; shared pulls its
	// image once more, warm, and prod not: the hits are shared's alone.
	mustPull(t, r.proxy, "shared/base/alpine:1", digA)
	waitServed(t, r.proxy, 2*3, "/v2/shared/base/alpine/blobs/")
	waitServed(t, r.proxy, 1, "/v2/prod/app/manifests/")
	text := scrape(t, r.proxy)
	for _, c := range []struct {
		labels string
		want   float64
	}{
		{`kind="blob",registry="shared",result="miss"`, 3},
		{`kind="blob",registry="shared",result="hit"`, 3},
		{`kind="blob",registry="prod",result="miss"`, 3},
		{`kind="blob",registry="prod",result="hit"`, 0},
		{`kind="manifest",registry="prod",result="miss"`, 1},
	} {
		if got := metric(text, "ecrproxy_cache_requests_total", c.labels); got != c.want {
			t.Errorf("ecrproxy_cache_requests_total{%s} = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := metric(text, "ecrproxy_served_bytes_total", `kind="blob",registry="prod",source="upstream"`); got < 2*(4<<10) {
		t.Errorf("prod's blob bytes from ECR = %v, want at least its two layers", got)
	}
	if got := metric(text, "ecrproxy_served_bytes_total", `kind="blob",registry="prod",source="cache"`); got != 0 {
		t.Errorf("prod's blob bytes from the cache = %v, want 0 (only shared pulled warm)", got)
	}
	for _, prefix := range []string{"shared", "prod"} {
		if got := metric(text, "ecrproxy_token_mints_total", `registry="`+prefix+`",result="success"`); got != 1 {
			t.Errorf("token mints of registry %s = %v, want 1", prefix, got)
		}
		if got := metric(text, "ecrproxy_upstream_requests_total", `code="200",kind="manifest",method="GET",registry="`+prefix+`"`); got < 1 {
			t.Errorf("manifest GETs of registry %s = %v, want at least 1", prefix, got)
		}
		if got := metric(text, "ecrproxy_upstream_requests_total", `code="200",kind="s3",method="GET",registry="`+prefix+`"`); got < 1 {
			t.Errorf("S3 GETs of registry %s's redirects = %v, want at least 1", prefix, got)
		}
	}

	ids := r.proxy.Logs()
	if !strings.Contains(ids, "assumed-role/ecr-proxy-pull/") || !strings.Contains(ids, "registry=prod") {
		t.Errorf("no identity line for registry prod with the assumed role in:\n%s", ids)
	}
}

// pushThrough pushes a random image as <prefix>/pushed:1 through the
// proxy, checks that an upload's Location keeps the prefix, and that
// registry e holds pushed:1 (without the prefix) afterwards.
func pushThrough(t *testing.T, p *proxytest.Proxy, prefix string, e *ecrtest.Emulator) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.URL()+"/v2/"+prefix+"/pushed/blobs/uploads/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := oneShot.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusAccepted || err != nil || loc.Host != p.Addr || !strings.HasPrefix(loc.Path, "/v2/"+prefix+"/pushed/blobs/uploads/") {
		t.Errorf("POST %s/pushed upload: %s, Location %q (%v); want 202 with a Location on the proxy under /v2/%s/pushed/blobs/uploads/",
			prefix, resp.Status, resp.Header.Get("Location"), err, prefix)
	}
	img, err := ecrtest.RandomImage(1, 2<<10, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(p.Addr+"/"+prefix+"/pushed:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s/pushed:1: %v", prefix, err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got := headManifest(t, e, "pushed", "1"); got != want.String() {
		t.Errorf("the registry of %s has pushed:1 at %q, want %s", prefix, got, want)
	}
}

// oneShot sends each request on a new connection: no idle connection
// to a proxy of this test is left in a pool for a later test's proxy,
// which may listen on the same port, to inherit.
var oneShot = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// headManifest asks emulator e directly for name:tag's digest.
func headManifest(t *testing.T, e *ecrtest.Emulator, repo, tag string) string {
	t.Helper()
	user, pw, err := e.Token()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, e.RegistryURL()+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pw)
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	resp, err := oneShot.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.Header.Get("Docker-Content-Digest")
}

// TestRegistriesOneDownOrRefusingLeavesTheOtherAlone: with registry a
// down, prefix prod still pulls cold content and /readyz reports each
// registry; with a refusing every token, prod still pulls and b mints
// no more tokens.
func TestRegistriesOneDownOrRefusingLeavesTheOtherAlone(t *testing.T) {
	r := startTwoRegistries(t)
	digA := seedImage(t, r.a, "base/alpine:1", 1, 4<<10, types.OCIManifestSchema1)
	digB := seedImage(t, r.b, "app:1", 1, 4<<10, types.OCIManifestSchema1)
	digB2 := seedImage(t, r.b, "app:2", 1, 4<<10, types.OCIManifestSchema1)
	digCached := seedImage(t, r.a, "base/cached:1", 1, 4<<10, types.OCIManifestSchema1)
	mustPull(t, r.proxy, "shared/base/cached:1", digCached)

	if err := r.a.Down(); err != nil {
		t.Fatal(err)
	}
	mustPull(t, r.proxy, "prod/app:1", digB)
	// A missing tag of the registry that answers is 404, not the 503 of
	// the one that is down.
	if code := getStatus(t, r.proxy, "/v2/prod/app/manifests/missing"); code != http.StatusNotFound {
		t.Errorf("prod/app:missing with registry a down: %d, want 404", code)
	}
	// The down registry's cached tag is still served.
	mustPull(t, r.proxy, "shared/base/cached:1", digCached)
	status, body := readyz(t, r.proxy)
	if status != http.StatusOK || body.Registries["shared"] != "unreachable" || body.Registries["prod"] != "reachable" || body.Status != "degraded" ||
		body.ECR != "partly reachable" {
		t.Errorf("/readyz with shared down: %d %+v; want 200, degraded, shared unreachable, prod reachable", status, body)
	}
	if code := getStatus(t, r.proxy, "/v2/shared/base/alpine/manifests/1"); code != http.StatusServiceUnavailable {
		t.Errorf("shared/base/alpine:1 cold with registry a down: %d, want 503", code)
	}
	if err := r.a.Up(); err != nil {
		t.Fatal(err)
	}

	mintsB := r.b.Count(ecrtest.KindTokenMint)
	r.a.RefuseTokens(http.StatusUnauthorized)
	if code := getStatus(t, r.proxy, "/v2/shared/base/alpine/manifests/1"); code < 400 {
		t.Errorf("shared/base/alpine:1 cold while registry a refuses every token: %d, want an error", code)
	}
	mustPull(t, r.proxy, "prod/app:2", digB2)
	if n := r.b.Count(ecrtest.KindTokenMint); n != mintsB {
		t.Errorf("registry b minted %d tokens while a refused its tokens, want none", n-mintsB)
	}
	r.a.RefuseTokens(0)
	mustPull(t, r.proxy, "shared/base/alpine:1", digA)

	// Only with every registry down is the proxy not ready.
	if err := r.a.Down(); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Down(); err != nil {
		t.Fatal(err)
	}
	status, body = readyz(t, r.proxy)
	if status != http.StatusServiceUnavailable || body.Registries["shared"] != "unreachable" || body.Registries["prod"] != "unreachable" || body.ECR != "unreachable" {
		t.Errorf("/readyz with both registries down: %d %+v; want 503, both unreachable", status, body)
	}
}

// getStatus is the status code of a GET of path from the proxy.
func getStatus(t *testing.T, p *proxytest.Proxy, path string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	resp, err := oneShot.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

type readiness struct {
	Status     string
	ECR        string
	Registries map[string]string
}

func readyz(t *testing.T, p *proxytest.Proxy) (int, readiness) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL()+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := oneShot.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body readiness
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestRegistriesUnknownPrefixAndOverlaps: a name under no prefix is 404
// NAME_UNKNOWN listing the prefixes, and reaches no registry;
// overlapping prefixes stop the start, naming both.
func TestRegistriesUnknownPrefixAndOverlaps(t *testing.T) {
	r := startTwoRegistries(t)
	r.a.ResetCounts()
	r.b.ResetCounts()
	for _, path := range []string{"/v2/other/app/manifests/1", "/v2/prod/blobs/uploads/", "/v2/sharedx/a/tags/list"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.proxy.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := oneShot.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Errors []struct{ Code, Message string }
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusNotFound || len(body.Errors) != 1 || body.Errors[0].Code != "NAME_UNKNOWN" ||
			!strings.Contains(body.Errors[0].Message, "shared/, prod/") {
			t.Errorf("GET %s: %d %+v (%v); want 404 NAME_UNKNOWN listing shared/ and prod/", path, resp.StatusCode, body, err)
		}
	}
	if n := len(r.a.Counts()) + len(r.b.Counts()); n != 0 {
		t.Errorf("requests reached the registries: a %v, b %v", r.a.Counts(), r.b.Counts())
	}

	cfg, err := proxytest.WriteConfig(t.TempDir(), proxytest.ConfigOptions{
		RootDirectory: t.TempDir(),
		ECRExtra: []string{
			"registries:",
			"  - {prefix: team, url: " + r.a.RegistryURL() + ", region: eu-west-1}",
			"  - {prefix: team/prod, url: " + r.b.RegistryURL() + ", region: us-east-1}",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), proxyBinary, "serve", cfg)
	cmd.Env = hermeticEnv(t)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `"team" and "team/prod"`) || !strings.Contains(string(out), "ecr.registries[].prefix") {
		t.Errorf("overlapping prefixes: %v, output %s; want a refusal naming the key and both prefixes", err, out)
	}
}

// TestRegistriesBlobSharedByBothIsFetchedOnce: an image in both
// registries is downloaded from the first; the second prefix's pull
// asks its registry only to confirm each blob (HEAD), and links the
// cached copy. Its manifest still comes from its own registry.
func TestRegistriesBlobSharedByBothIsFetchedOnce(t *testing.T) {
	r := startTwoRegistries(t)
	img, err := ecrtest.RandomImage(2, 64<<10, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	dig, err := r.a.Seed(t.Context(), "base/alpine:1", img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Seed(t.Context(), "mirror/alpine:1", img); err != nil {
		t.Fatal(err)
	}
	r.a.ResetCounts()
	r.b.ResetCounts()
	mustPull(t, r.proxy, "shared/base/alpine:1", dig)
	if n := r.a.Count(ecrtest.KindBlobGET); n != 3 {
		t.Errorf("registry a served %d blob GETs for two layers and a config, want 3", n)
	}
	mustPull(t, r.proxy, "prod/mirror/alpine:1", dig)
	if n := r.b.Count(ecrtest.KindBlobGET); n != 0 {
		t.Errorf("registry b served %d blob GETs for blobs already cached, want 0", n)
	}
	if n := r.b.Count(ecrtest.KindManifestGET) + r.b.Count(ecrtest.KindManifestHEAD); n == 0 {
		t.Error("the manifest of prod/mirror/alpine:1 was not asked of registry b")
	}
	if n := r.b.Count(ecrtest.KindBlobHEAD); n != 3 {
		t.Errorf("registry b was asked %d blob HEADs, want 3 (one confirmation per blob)", n)
	}
	// A blob the second registry does not have is not served under its
	// prefix, even though the cache holds it.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	if code := getStatus(t, r.proxy, "/v2/prod/other/blobs/"+ld.String()); code != http.StatusNotFound {
		t.Errorf("GET prod/other's blob %s (cached for another repository, absent from registry b): %d, want 404", ld, code)
	}
}

// TestRegistriesBlobSharedByBothAtOnceIsFetchedOnce: a layer both
// registries hold, pulled cold through both prefixes at the same moment,
// is downloaded from registry a only; registry b is asked to confirm it
// (a HEAD) and its client joins a's download.
func TestRegistriesBlobSharedByBothAtOnceIsFetchedOnce(t *testing.T) {
	r := startTwoRegistries(t)
	img, err := ecrtest.RandomImage(1, 1<<20, types.OCIManifestSchema1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.Seed(t.Context(), "base/alpine:1", img); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Seed(t.Context(), "mirror/alpine:1", img); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	want, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	wantBytes, err := io.ReadAll(want)
	_ = want.Close()
	if err != nil {
		t.Fatal(err)
	}
	r.a.ResetCounts()
	r.b.ResetCounts()
	release := r.a.StallBlobs(64 << 10) // a's download stays in flight
	defer release()
	first := getBlob(t, r.proxy, "shared/base/alpine", ld.String())
	defer first.Body.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.proxy.URL()+"/v2/prod/mirror/alpine/blobs/"+ld.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		resp *http.Response
		err  error
	}
	second := make(chan answer, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed by the test below
		second <- answer{resp, err}
	}()
	// The second client's request has reached b (its HEAD) before a's
	// download is let go.
	if _, err := r.proxy.WaitForLines(t.Context(), 1, func(l string) bool {
		return strings.Contains(l, "joined after ECR confirmed it")
	}); err != nil {
		t.Fatalf("the second prefix's request did not join the download: %v", err)
	}
	release()
	ans := <-second
	if ans.err != nil {
		t.Fatalf("GET through the second prefix: %v", ans.err)
	}
	resp := ans.resp
	defer resp.Body.Close()
	for i, body := range []io.Reader{first.Body, resp.Body} {
		b, err := io.ReadAll(body)
		if err != nil || !bytes.Equal(b, wantBytes) {
			t.Errorf("client %d: %d bytes, %v; want the layer's %d", i, len(b), err, len(wantBytes))
		}
	}
	if n := r.a.Count(ecrtest.KindBlobGET); n != 1 {
		t.Errorf("registry a served %d blob GETs, want 1", n)
	}
	if n := r.b.Count(ecrtest.KindBlobGET); n != 0 {
		t.Errorf("registry b served %d blob GETs for a blob downloading from a, want 0", n)
	}
	if n := r.b.Count(ecrtest.KindBlobHEAD); n != 1 {
		t.Errorf("registry b was asked %d blob HEADs, want 1 (the confirmation)", n)
	}
}

// TestRegistriesOneTokenRevokedLeavesTheOtherAlone: registry a forgets
// every token it minted (401); a cold pull through its prefix re-mints
// a's token once and succeeds, and registry b neither mints nor fails.
func TestRegistriesOneTokenRevokedLeavesTheOtherAlone(t *testing.T) {
	r := startTwoRegistries(t)
	digA := seedImage(t, r.a, "base/alpine:1", 1, 4<<10, types.OCIManifestSchema1)
	digB := seedImage(t, r.b, "app:1", 1, 4<<10, types.OCIManifestSchema1)
	digB2 := seedImage(t, r.b, "app:2", 1, 4<<10, types.OCIManifestSchema1)
	mustPull(t, r.proxy, "prod/app:1", digB)
	mintsA, mintsB := r.a.Count(ecrtest.KindTokenMint), r.b.Count(ecrtest.KindTokenMint)

	r.a.RevokeTokens()
	mustPull(t, r.proxy, "shared/base/alpine:1", digA)
	if n := r.a.Count(ecrtest.KindTokenMint) - mintsA; n != 1 {
		t.Errorf("registry a minted %d tokens after revoking its tokens, want 1 (one re-mint)", n)
	}
	mustPull(t, r.proxy, "prod/app:2", digB2)
	if n := r.b.Count(ecrtest.KindTokenMint) - mintsB; n != 0 {
		t.Errorf("registry b minted %d tokens after registry a revoked its own, want 0", n)
	}
	if _, err := r.proxy.WaitForLines(t.Context(), 1, func(l string) bool {
		return strings.Contains(l, "ECR refused the current token") && strings.Contains(l, "registry=shared")
	}); err != nil {
		t.Errorf("no re-mint line for registry shared: %v", err)
	}
	if strings.Contains(linesWith(r.proxy.Logs(), "ECR refused the current token"), "registry=prod") {
		t.Error("registry prod logged a refused token, but only registry a revoked its tokens")
	}
	text := scrape(t, r.proxy)
	if got := metric(text, "ecrproxy_token_mints_total", `registry="shared",result="success"`); got != 2 {
		t.Errorf("token mints of registry shared = %v, want 2", got)
	}
	if got := metric(text, "ecrproxy_token_mints_total", `registry="prod",result="success"`); got != 1 {
		t.Errorf("token mints of registry prod = %v, want 1", got)
	}
}

// linesWith is the lines of logs that contain s.
func linesWith(logs, s string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRegistriesUnknownPrefixAsksForCredentialsFirst: with client
// authentication, a request for a name under no prefix is answered as
// any other, 401 with the challenge, until the client authenticates:
// the prefixes are listed to authenticated clients only.
func TestRegistriesUnknownPrefixAsksForCredentialsFirst(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startTwoRegistriesWith(t, fmt.Sprintf("auth:\n  htpasswd:\n    realm: ecr-proxy\n    path: %s\n", htpasswd))
	for _, tc := range []struct {
		name, method, path string
		user, pw           string
		want               int
		wantIn             string
	}{
		{"anonymous GET", http.MethodGet, "/v2/other/app/manifests/1", "", "", http.StatusUnauthorized, "UNAUTHORIZED"},
		{"anonymous POST", http.MethodPost, "/v2/other/app/blobs/uploads/", "", "", http.StatusUnauthorized, "UNAUTHORIZED"},
		{"wrong password", http.MethodGet, "/v2/other/app/tags/list", "alice", "wrong", http.StatusUnauthorized, "UNAUTHORIZED"},
		{"alice", http.MethodGet, "/v2/other/app/manifests/1", "alice", "s3cret", http.StatusNotFound, "shared/, prod/"},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, r.proxy.URL()+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pw)
		}
		resp, err := oneShot.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.wantIn) {
			t.Errorf("%s %s %s: %s %s; want %d with %q", tc.name, tc.method, tc.path, resp.Status, body, tc.want, tc.wantIn)
		}
		if tc.want == http.StatusUnauthorized && (strings.Contains(string(body), "prod") || !strings.Contains(resp.Header.Get("Www-Authenticate"), `Basic realm="ecr-proxy"`)) {
			t.Errorf("%s %s %s: %q %s; want the proxy's Basic challenge and no prefix", tc.name, tc.method, tc.path, resp.Header.Get("Www-Authenticate"), body)
		}
	}
}

// prefixEach is lines, each after prefix.
func prefixEach(prefix string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = prefix + l
	}
	return out
}

// TestRegistriesRenewEachOnItsOwnInterval: registry b's renewinterval
// (1s: renewed at the 5 s floor) renews b's token while a's, on the
// default 6h, is minted once.
func TestRegistriesRenewEachOnItsOwnInterval(t *testing.T) {
	r := startTwoRegistriesWith(t, "", "renewinterval: 1s")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := r.proxy.WaitForLines(ctx, 2, func(l string) bool {
		return strings.Contains(l, "minted ECR token") && strings.Contains(l, "registry=prod")
	}); err != nil {
		t.Fatalf("registry prod's token was not renewed on its 1s interval: %v", err)
	}
	if n := r.a.Count(ecrtest.KindTokenMint); n != 1 {
		t.Errorf("registry a minted %d tokens while b renewed its own, want 1 (renewinterval 6h)", n)
	}
	if n := strings.Count(linesWith(r.proxy.Logs(), "minted ECR token"), "registry=shared"); n != 1 {
		t.Errorf("registry shared logged %d mints, want 1", n)
	}
}

// TestRegistriesCopyBetweenPrefixes: copying an image from one prefix to
// the other through the proxy (the client asks for cross-repository
// mounts, which cannot cross registries) uploads its blobs to the
// target's registry.
func TestRegistriesCopyBetweenPrefixes(t *testing.T) {
	r := startTwoRegistries(t)
	dig := seedImage(t, r.a, "base/alpine:1", 2, 4<<10, types.OCIManifestSchema1)
	src, err := name.ParseReference(r.proxy.Addr+"/shared/base/alpine:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := name.ParseReference(r.proxy.Addr+"/prod/copied:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(src, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("copy shared/base/alpine:1 to prod/copied:1: %v", err)
	}
	if got := headManifest(t, r.b, "copied", "1"); got != dig {
		t.Errorf("registry b has copied:1 at %q, want %s", got, dig)
	}
	if n := r.b.Count(ecrtest.KindUpload); n == 0 {
		t.Error("registry b received no upload: the blobs cannot have come from registry a")
	}
	mustPull(t, r.proxy, "prod/copied:1", dig)
}

// TestRegistriesRoleRefusedLeavesTheOtherAlone: registry b's role
// refuses the proxy (a wrong external ID): the log says so for registry
// prod, its pulls fail without hanging, /readyz says prod has no
// credentials (200, degraded), and registry a serves as before.
func TestRegistriesRoleRefusedLeavesTheOtherAlone(t *testing.T) {
	a, b, env := newTwoEmulators(t)
	digA := seedImage(t, a, "base/alpine:1", 1, 4<<10, types.OCIManifestSchema1)
	seedImage(t, b, "app:1", 1, 4<<10, types.OCIManifestSchema1)
	p := startRoleRefused(t, a, b, env)
	if _, err := p.WaitForLines(t.Context(), 1, func(l string) bool {
		return strings.Contains(l, "AssumeRole") && strings.Contains(l, "registry=prod")
	}); err != nil {
		t.Fatalf("no line saying registry prod's role was refused: %v", err)
	}
	mustPull(t, p, "shared/base/alpine:1", digA)
	if code := getStatus(t, p, "/v2/prod/app/manifests/1"); code < 400 {
		t.Errorf("prod/app:1 with its role refused: %d, want an error", code)
	}
	if n := b.Count(ecrtest.KindTokenMint); n != 0 {
		t.Errorf("registry b minted %d tokens for a proxy its role refuses, want 0", n)
	}
	status, body := readyz(t, p)
	if status != http.StatusOK || body.Status != "degraded" || body.ECR != "partly reachable" ||
		body.Registries["shared"] != "reachable" || body.Registries["prod"] != "no credentials" {
		t.Errorf("/readyz with prod's role refused: %d %+v; want 200, degraded, shared reachable, prod no credentials", status, body)
	}
	if strings.Contains(p.Logs(), "wrong-id") {
		t.Error("the external ID is in the log")
	}
}

// startRoleRefused starts a proxy serving "shared/" from a and "prod/"
// from b through prodRole with a wrong external ID, and waits until it
// listens.
func startRoleRefused(t *testing.T, a, b *ecrtest.Emulator, env []string) *proxytest.Proxy {
	t.Helper()
	cfg, err := proxytest.WriteConfig(t.TempDir(), proxytest.ConfigOptions{
		RootDirectory: t.TempDir(),
		ECRExtra: []string{
			"registries:",
			"  - {prefix: shared, url: " + a.RegistryURL() + ", region: " + a.Region() + "}",
			"  - {prefix: prod, url: " + b.RegistryURL() + ", region: " + b.Region() + ", role: '" + prodRole + "', externalid: wrong-id}",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(t, []string{"serve", cfg}, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRegistriesWithoutCredentialsAreNotReady: with registry a denying
// every mint and b's role refused, both answer their API version check
// but /readyz is 503 with both "no credentials"; once a mints again (on
// a pull), it is 200 and degraded, a reachable.
func TestRegistriesWithoutCredentialsAreNotReady(t *testing.T) {
	a, b, env := newTwoEmulators(t)
	digA := seedImage(t, a, "base/alpine:1", 1, 4<<10, types.OCIManifestSchema1)
	a.DenyMints(1 << 30)
	p := startRoleRefused(t, a, b, env)
	if _, err := p.WaitForLines(t.Context(), 2, func(l string) bool {
		return strings.Contains(l, "renewing the ECR token failed")
	}); err != nil {
		t.Fatalf("no line saying each registry's first mint failed: %v", err)
	}
	status, body := readyz(t, p)
	if status != http.StatusServiceUnavailable || body.Status != "degraded" || body.ECR != "no credentials" ||
		body.Registries["shared"] != "no credentials" || body.Registries["prod"] != "no credentials" {
		t.Errorf("/readyz with no registry able to mint: %d %+v; want 503, ecr and both registries no credentials", status, body)
	}
	a.DenyMints(0)
	mustPull(t, p, "shared/base/alpine:1", digA)
	status, body = readyz(t, p)
	if status != http.StatusOK || body.Status != "degraded" || body.Registries["shared"] != "reachable" || body.Registries["prod"] != "no credentials" {
		t.Errorf("/readyz once shared minted: %d %+v; want 200, degraded, shared reachable, prod no credentials", status, body)
	}
}

// TestRegistryWithoutCredentialsIsNotReady: the single registry answers
// its API version check but every mint is denied: /readyz is 503, "ecr":
// "no credentials" (alerting; the probes are on /healthz, which stays
// 200); a successful mint makes it ready again.
func TestRegistryWithoutCredentialsIsNotReady(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 1, 4<<10, types.OCIManifestSchema1)
	emu.DenyMints(1 << 30)
	p := startProxy(t, emu, proxyOpts{noToken: true})
	if _, err := p.WaitForLines(t.Context(), 1, func(l string) bool {
		return strings.Contains(l, "renewing the ECR token failed")
	}); err != nil {
		t.Fatalf("no line saying the first mint failed: %v", err)
	}
	status, body := readyz(t, p)
	if status != http.StatusServiceUnavailable || body.Status != "degraded" || body.ECR != "no credentials" {
		t.Errorf("/readyz with every mint denied: %d %+v; want 503, degraded, no credentials", status, body)
	}
	if code := getStatus(t, p, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with every mint denied: %d, want 200", code)
	}
	emu.DenyMints(0)
	mustPull(t, p, "team/app:1", d)
	if status, body := readyz(t, p); status != http.StatusOK || body.ECR != "reachable" {
		t.Errorf("/readyz once minted: %d %+v; want 200, reachable", status, body)
	}
}

// TestRegistriesShareOneBound: one cache bound covers both registries:
// pulls through prod evict what shared pulled, and the cache stays
// within maxsize.
func TestRegistriesShareOneBound(t *testing.T) {
	const maxsize = 4 << 20
	r := startTwoRegistriesConfig(t, proxytest.ConfigOptions{StorageParams: map[string]string{"maxsize": "4m"}})
	digA := seedImage(t, r.a, "base/big:1", 2, 1<<20, types.OCIManifestSchema1)
	mustPull(t, r.proxy, "shared/base/big:1", digA)
	for i := range 2 {
		dig := seedImage(t, r.b, fmt.Sprintf("big%d:1", i), 2, 1<<20, types.OCIManifestSchema1)
		mustPull(t, r.proxy, fmt.Sprintf("prod/big%d:1", i), dig)
	}
	if n := waitForMetric(t, r.proxy, "ecrproxy_cache_evictions_total", "", func(v float64) bool { return v > 0 }); n == 0 {
		t.Error("no eviction after pulling about 6 MiB through both prefixes into a 4 MiB cache")
	}
	if size := waitForMetric(t, r.proxy, "ecrproxy_cache_size_bytes", "", func(v float64) bool { return v <= maxsize }); size > maxsize {
		t.Errorf("cache holds %v bytes after pulls through both prefixes, want at most %d", size, maxsize)
	}
	// shared's image, the least recently used, was evicted: it is
	// fetched from registry a again.
	r.a.ResetCounts()
	mustPull(t, r.proxy, "shared/base/big:1", digA)
	if n := r.a.Count(ecrtest.KindBlobGET); n == 0 {
		t.Error("shared/base/big:1 pulled again without a blob GET from registry a: nothing of it was evicted")
	}
}
