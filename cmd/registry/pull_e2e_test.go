package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

// TestPullThrough pulls Docker schema2 and OCI images and a multi-platform
// index through the proxy, by tag and by digest, and checks that a second
// pull comes from the cache.
func TestPullThrough(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	want := map[string]string{}
	direct := map[string]pulled{} // what ECR holds
	for _, seed := range []struct {
		ref    string
		layers int
		size   int64
		mt     types.MediaType
	}{
		{"team/schema2:1.0", 3, 300 << 10, types.DockerManifestSchema2},
		{"team/oci:1.0", 2, 1 << 20, types.OCIManifestSchema1},
	} {
		want[seed.ref], direct[seed.ref] = seedImageContent(t, emu, seed.ref, seed.layers, seed.size, seed.mt)
	}
	idx, err := ecrtest.RandomIndex(2, 2, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	indexDigest, err := emu.SeedIndex(t.Context(), "team/multi:1.0", idx)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, emu, proxyOpts{})

	for ref, d := range want {
		got := mustPull(t, p, ref, d)
		if diff := cmp.Diff(direct[ref], got, cmp.AllowUnexported(pulled{})); diff != "" {
			t.Errorf("pull %s through the proxy differs from ECR (-ecr +proxy):\n%s", ref, diff)
		}
	}
	children := pullIndex(t, p, "team/multi:1.0", indexDigest)
	if len(children) != 2 {
		t.Fatalf("index has %d children, want 2", len(children))
	}
	if n := emu.Count(ecrtest.KindTokenMint); n != 1 {
		t.Errorf("token mints during cold pulls = %d, want 1", n)
	}

	// Second pull, by digest: everything from the cache, nothing from ECR.
	emu.ResetCounts()
	for ref, d := range want {
		repo, _, _ := strings.Cut(ref, ":")
		mustPull(t, p, repo+"@"+d, d)
	}
	pullIndex(t, p, "team/multi@"+indexDigest, indexDigest)
	for _, k := range []ecrtest.Kind{ecrtest.KindBlobGET, ecrtest.KindS3GET, ecrtest.KindTokenMint, ecrtest.KindManifestGET, ecrtest.KindBlobHEAD} {
		if n := emu.Count(k); n != 0 {
			t.Errorf("warm pull by digest: %s = %d, want 0 (all counts: %v)", k, n, emu.Counts())
		}
	}

	// By tag, the tag is checked upstream (one manifest HEAD) but no blob
	// is fetched again.
	emu.ResetCounts()
	for ref, d := range want {
		mustPull(t, p, ref, d)
	}
	for _, k := range []ecrtest.Kind{ecrtest.KindBlobGET, ecrtest.KindS3GET, ecrtest.KindTokenMint, ecrtest.KindManifestGET} {
		if n := emu.Count(k); n != 0 {
			t.Errorf("warm pull by tag: %s = %d, want 0 (all counts: %v)", k, n, emu.Counts())
		}
	}
	if n := emu.Count(ecrtest.KindManifestHEAD); n != len(want) {
		t.Errorf("warm pull by tag: manifest HEADs = %d, want %d (one per tag)", n, len(want))
	}
}

// pullIndex pulls an index and every child image through the proxy.
func pullIndex(t *testing.T, p interface{ URL() string }, ref, wantDigest string) []pulled {
	t.Helper()
	host := strings.TrimPrefix(p.URL(), "http://")
	r, err := name.ParseReference(host+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil || d.String() != wantDigest {
		t.Fatalf("index %s digest %v (%v), want %s", ref, d, err, wantDigest)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []pulled
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatalf("child %s: %v", m.Digest, err)
		}
		got, err := readImage(img)
		if err != nil {
			t.Fatalf("child %s: %v", m.Digest, err)
		}
		if got.digest != m.Digest.String() {
			t.Errorf("child digest %s, want %s", got.digest, m.Digest)
		}
		out = append(out, got)
	}
	return out
}

// TestTokenExpiryAndRevocationAreInvisible: a token that expires, or that
// ECR revokes, between two pulls costs exactly one extra mint and no
// client error.
func TestTokenExpiryAndRevocationAreInvisible(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	digests := map[string]string{}
	for _, ref := range []string{"team/a:1", "team/b:1", "team/c:1"} {
		digests[ref] = seedImage(t, emu, ref, 1, 32<<10, types.OCIManifestSchema1)
	}
	p := startProxy(t, emu, proxyOpts{})
	mustPull(t, p, "team/a:1", digests["team/a:1"])
	if n := emu.Count(ecrtest.KindTokenMint); n != 1 {
		t.Fatalf("mints after first pull = %d, want 1", n)
	}
	emu.ExpireTokens()
	mustPull(t, p, "team/b:1", digests["team/b:1"])
	if n := emu.Count(ecrtest.KindTokenMint); n != 2 {
		t.Errorf("mints after expiry = %d, want 2", n)
	}
	emu.RevokeTokens()
	mustPull(t, p, "team/c:1", digests["team/c:1"])
	if n := emu.Count(ecrtest.KindTokenMint); n != 3 {
		t.Errorf("mints after revocation = %d, want 3", n)
	}
}

// TestECRDown: with ECR unreachable, cached content is served and what is
// not cached fails with 503 UNAVAILABLE, saying why and nothing internal.
func TestECRDown(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	cached := seedImage(t, emu, "team/app:1.2", 2, 64<<10, types.DockerManifestSchema2)
	uncached := seedImage(t, emu, "team/other:1.0", 1, 64<<10, types.DockerManifestSchema2)
	p := startProxy(t, emu, proxyOpts{})
	mustPull(t, p, "team/app:1.2", cached)

	if err := emu.Down(); err != nil {
		t.Fatal(err)
	}
	mustPull(t, p, "team/app:1.2", cached)
	mustPull(t, p, "team/app@"+cached, cached)

	for _, ref := range []string{"team/other:1.0", "team/other@" + uncached} {
		_, err := pullImage(t.Context(), p, ref)
		var terr *transport.Error
		if !errors.As(err, &terr) {
			t.Fatalf("pull %s with ECR down: error %v, want a registry error", ref, err)
		}
		if terr.StatusCode != http.StatusServiceUnavailable || len(terr.Errors) != 1 || terr.Errors[0].Code != "UNAVAILABLE" {
			t.Errorf("pull %s with ECR down: %d %+v, want 503 UNAVAILABLE", ref, terr.StatusCode, terr.Errors)
		}
		body := fmt.Sprint(terr.Errors)
		for _, leak := range []string{"127.0.0.1", emu.RegistryHost(), "dial", "connection refused"} {
			if strings.Contains(body, leak) {
				t.Errorf("error body %q reveals %q", body, leak)
			}
		}
		if !strings.Contains(body, "unavailable") {
			t.Errorf("error body %q does not say the upstream is unavailable", body)
		}
	}

	if err := emu.Up(); err != nil {
		t.Fatal(err)
	}
	mustPull(t, p, "team/other:1.0", uncached)
}

// TestStartsWithAWSUnreachable: the proxy starts and serves its cache when
// the AWS API cannot be reached, and mints as soon as it answers.
func TestStartsWithAWSUnreachable(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	cached := seedImage(t, emu, "team/app:1", 1, 64<<10, types.OCIManifestSchema1)
	later := seedImage(t, emu, "team/later:1", 1, 64<<10, types.OCIManifestSchema1)
	cacheDir := t.TempDir()

	first := startProxy(t, emu, proxyOpts{cacheDir: cacheDir})
	mustPull(t, first, "team/app:1", cached)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	// AWS's API cannot be reached, yet.
	aws := newAWSOutage(t, emu)
	env := replaceEnv(replaceEnv(emu.Env(), "AWS_ENDPOINT_URL_ECR", aws.url), "AWS_ENDPOINT_URL_STS", aws.url)
	emu.ResetCounts()
	p := startProxy(t, emu, proxyOpts{cacheDir: cacheDir, env: env, noToken: true})
	if _, err := p.WaitForLog(t.Context(), "could not determine the AWS identity"); err != nil {
		t.Error(err)
	}
	mustPull(t, p, "team/app:1", cached)
	if _, err := pullImage(t.Context(), p, "team/later:1"); err == nil {
		t.Fatal("uncached pull succeeded with no way to mint a token")
	}

	// AWS comes back on the same address.
	aws.end()
	mustPull(t, p, "team/later:1", later)
	// The pull's own mint, and at most one more: the background renewal,
	// which failed while AWS was unreachable, mints again when its retry
	// timer fires, whether or not a request has minted since
	// (auth.TokenSource.Run), and that timer may fire during the pull.
	if n := emu.Count(ecrtest.KindTokenMint); n < 1 || n > 2 {
		t.Errorf("mints once AWS is back = %d, want 1 (2 when the background retry fired meanwhile)", n)
	}
}

// awsOutage stands in for AWS's API endpoint on a loopback listener the
// test holds until cleanup, so that no other process can take its port
// (as it could if the test closed a listener to reopen it later). Until
// end it drops every connection unanswered, as an endpoint that cannot be
// reached; then it forwards to the emulator's API.
type awsOutage struct {
	url   string
	ended atomic.Bool
}

// newAWSOutage starts an outage of emu's API, served until cleanup.
func newAWSOutage(t *testing.T, emu *ecrtest.Emulator) *awsOutage {
	t.Helper()
	target, err := url.Parse(emu.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	o := &awsOutage{}
	api := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.ended.Load() {
			api.ServeHTTP(w, r)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler) // drops the connection all the same
		}
		_ = conn.Close()
	}))
	t.Cleanup(srv.Close)
	o.url = srv.URL
	return o
}

// end ends the outage: the API answers from now on.
func (o *awsOutage) end() { o.ended.Store(true) }

// TestCredentialSources runs the proxy with each source of the AWS
// credential chain and checks the pull and the identity it logs.
func TestCredentialSources(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 1, 16<<10, types.OCIManifestSchema1)
	endpoints := []string{
		"AWS_REGION=" + emu.Region(),
		"AWS_ENDPOINT_URL_ECR=" + emu.APIURL(),
		"AWS_ENDPOINT_URL_STS=" + emu.APIURL(),
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	credsFile := write("credentials", fmt.Sprintf("[ci]\naws_access_key_id = %s\naws_secret_access_key = %s\n", ecrtest.AccessKeyID, ecrtest.SecretAccessKey))
	tokenFile := write("web-identity-token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
	tests := []struct {
		name       string
		env        []string
		wantSource string
		wantARN    string
		wantKind   ecrtest.Kind
	}{
		{"env keys", []string{"AWS_ACCESS_KEY_ID=" + ecrtest.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + ecrtest.SecretAccessKey, "AWS_EC2_METADATA_DISABLED=true"},
			"EnvConfigCredentials", ":user/", ecrtest.KindTokenMint},
		{"shared credentials profile", []string{"AWS_PROFILE=ci", "AWS_SHARED_CREDENTIALS_FILE=" + credsFile, "AWS_EC2_METADATA_DISABLED=true"},
			"\"SharedConfigCredentials: " + credsFile, ":user/", ecrtest.KindTokenMint},
		{"web identity (IRSA)", []string{"AWS_WEB_IDENTITY_TOKEN_FILE=" + tokenFile, "AWS_ROLE_ARN=arn:aws:iam::" + emu.AccountID() + ":role/proxy-role",
			"AWS_ROLE_SESSION_NAME=proxy", "AWS_EC2_METADATA_DISABLED=true"}, "WebIdentityCredentials", "assumed-role/proxy-role/proxy", ecrtest.KindWebIdentity},
		{"container credentials (ECS, EKS Pod Identity)", []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + emu.ContainerCredentialsURL(),
			"AWS_CONTAINER_AUTHORIZATION_TOKEN=" + emu.ContainerAuthToken(), "AWS_EC2_METADATA_DISABLED=true"}, "CredentialsEndpointProvider", "assumed-role/", ecrtest.KindContainerCreds},
		{"EC2 instance metadata (IMDSv2)", []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + emu.IMDSURL()}, "EC2RoleProvider", "assumed-role/", ecrtest.KindIMDS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu.ResetCounts()
			p := startProxy(t, emu, proxyOpts{env: append(append([]string{}, endpoints...), tt.env...)})
			mustPull(t, p, "team/app:1", d)
			line, err := p.WaitForLog(t.Context(), `msg="AWS identity"`)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"credentials_source=" + tt.wantSource, tt.wantARN, "account=" + emu.AccountID()} {
				if !strings.Contains(line, want) {
					t.Errorf("identity line %q does not contain %q", line, want)
				}
			}
			if emu.Count(tt.wantKind) == 0 || emu.Count(ecrtest.KindTokenMint) != 1 {
				t.Errorf("counts %v: want %s used and one token mint", emu.Counts(), tt.wantKind)
			}
		})
	}
}

// TestExampleConfigServes runs `registry serve config.yml.example` with
// only what a user fills in (the ECR URL) and what a test must move (the
// cache directory and the ports, through distribution's REGISTRY_*
// overrides), and pulls through it.
func TestExampleConfigServes(t *testing.T) {
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t)
	d := seedImage(t, emu, "team/app:1", 1, 64<<10, types.OCIManifestSchema1)
	example, err := filepath.Abs(filepath.Join("..", "..", "config.yml.example"))
	if err != nil {
		t.Fatal(err)
	}
	p := runProxy(t, []string{"serve", example}, append(withoutKey(emu.Env(), "ECR"),
		"REGISTRY_PROXY_REMOTEURL="+emu.RegistryURL(),
		"REGISTRY_STORAGE_LRUFILESYSTEM_ROOTDIRECTORY="+t.TempDir(),
		"REGISTRY_HTTP_ADDR=127.0.0.1:0",
		"REGISTRY_HTTP_DEBUG_ADDR=127.0.0.1:0"))
	mustPull(t, p, "team/app:1", d)
}
