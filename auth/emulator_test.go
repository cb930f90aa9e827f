package auth

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"testing/synctest"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
)

func TestMain(m *testing.M) {
	// The emulator's embedded distribution registry logs every request
	// through logrus' standard logger.
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// newEmulator starts the ECR emulator for a test, with the process
// environment made hermetic (no AWS_* variables but the emulator's static
// key and ECR endpoint, no shared files, no instance metadata), so that
// the AWS SDK's default chain finds the emulator's key and nothing else.
// Tests using it cannot run in parallel.
func newEmulator(t *testing.T, opts ...ecrtest.Option) *ecrtest.Emulator {
	t.Helper()
	ecrtest.ClearAWSEnv(t)
	emu := ecrtest.New(t, opts...)
	t.Setenv("AWS_ACCESS_KEY_ID", ecrtest.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ecrtest.SecretAccessKey)
	t.Setenv("AWS_ENDPOINT_URL_ECR", emu.APIURL())
	return emu
}

// sdkECR is the AWS SDK's ECR client, configured by its default chain
// (see newEmulator) in the emulator's region, sending through hc.
func sdkECR(ctx context.Context, t *testing.T, emu *ecrtest.Emulator, hc *http.Client) *ecr.Client {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(emu.Region()), config.WithHTTPClient(hc))
	if err != nil {
		t.Fatalf("load AWS config: %v", err)
	}
	return ecr.NewFromConfig(cfg)
}

// emulated is a TokenSource minting from the emulator through the real
// SDK and a Transport for the emulator's registry, both sending through
// base: the loopback network (http.DefaultTransport's settings) or an
// ecrtest.MemNet inside a synctest bubble.
type emulated struct {
	emu    *ecrtest.Emulator
	src    *TokenSource
	tr     *Transport
	client *http.Client
}

func newEmulated(ctx context.Context, t *testing.T, emu *ecrtest.Emulator, base http.RoundTripper, opts ...TokenSourceOption) *emulated {
	t.Helper()
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	src := newSource(t, sdkECR(ctx, t, emu, &http.Client{Transport: base}), opts...)
	tr, err := NewTransport(emu.RegistryURL(), src, WithBase(base))
	if err != nil {
		t.Fatalf("NewTransport: %v", err)
	}
	return &emulated{emu: emu, src: src, tr: tr, client: &http.Client{Transport: tr}}
}

// startRun runs the TokenSource's Run in the background of a synctest
// bubble until the returned stop is called. stop cancels Run, waits for it
// to return and for a mint it leaves behind (mints are detached from
// their callers) to end, so that the in-memory network can be closed
// under nobody.
func (e *emulated) startRun(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.src.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
		synctest.Wait()
	}
}

// do sends one request to the registry through the Transport and returns
// the status and body.
func (e *emulated) do(ctx context.Context, t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.emu.RegistryURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// mints is how many GetAuthorizationToken calls the emulator answered.
func (e *emulated) mints() int { return e.emu.Count(ecrtest.KindTokenMint) }

// seedBlob seeds a one-layer image at ref and returns the layer's digest.
func seedBlob(t *testing.T, emu *ecrtest.Emulator, ref string) string {
	t.Helper()
	img, err := ecrtest.RandomImage(1, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.Seed(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
