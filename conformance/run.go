// Command conformance runs the OCI distribution-spec conformance suite
// against ecr-proxy in front of the offline ECR emulator:
//
//	go run ./conformance                        # every category
//	go run ./conformance -categories pull,discovery -v
//
// It builds the proxy, installs the pinned suite with "go install", starts
// the emulator on loopback (supporting sha512 digests as the suite's
// registry does, unless -ecr-digests), seeds the content the suite reads when it may
// not push (an OCI image under several tags, its config and layer blobs,
// and a multi-platform index), starts the proxy in front of the emulator,
// runs the suite against the proxy and summarises its junit.xml. It exits
// non-zero when a test that applies fails, unless the failure is listed in
// defaultExpectedFailures with its reason. See README.md in this folder.
package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sirupsen/logrus"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/ecr-proxy/ecr-proxy/internal/proxytest"
)

// The suite, pinned. It is a Go main package since its 2026 rewrite (the
// ginkgo "go test -c" suite is gone; "go test" still works but is
// deprecated), configured by OCI_* environment variables.
const (
	suiteModule  = "github.com/opencontainers/distribution-spec/conformance"
	suiteVersion = "v0.0.0-20260831232431-97274622c111"
	suiteRoot    = "OCI Conformance Test" // name of the root of every test
)

// Repositories the suite uses (its defaults, written out).
const (
	repo1 = "conformance/repo1"
	repo2 = "conformance/repo2"
)

// Categories of the suite's APIs, as the legacy OCI_TEST_* switches
// grouped them.
const (
	catPull       = "pull"       // ping, manifest and blob GET and HEAD, 404s for missing content
	catDiscovery  = "discovery"  // tags/list (with last), referrers
	catPush       = "push"       // blob uploads (all methods), mounts, manifest PUT
	catManagement = "management" // tag, manifest and blob DELETE
)

var allCategories = []string{catPull, catDiscovery, catPush, catManagement}

// expectedFailure is a test known to fail against the proxy, with why.
// A failing test whose name starts with prefix does not fail the run
// (unless -strict); one that passes is reported so that the entry can go.
type expectedFailure struct {
	prefix   string // test name prefix, below suiteRoot + "/"
	category string // the category that runs it
	reason   string
	// ecrDigests: expected only with -ecr-digests (the emulator stores
	// sha256 digests only, as ECR does).
	ecrDigests bool
}

// defaultExpectedFailures: keep each reason short and precise; README.md
// has the details and the proposed fixes.
func defaultExpectedFailures() []expectedFailure {
	const (
		chunks      = "ECR refuses upload chunks under 5 MiB except the last (the suite sends small chunks)"
		chunksOrder = "ECR refuses upload chunks under 5 MiB except the last, before looking at their order"
		chunksCheck = "ECR refuses upload chunks under 5 MiB except the last, before the digest is checked"
	)
	return []expectedFailure{
		{prefix: "sha512", category: catPush, ecrDigests: true,
			reason: "ECR stores sha256 digests only; content pushed with sha512 is kept under its sha256 digest"},
		{prefix: "sha256 blobs/chunked multi", category: catPush, reason: chunks},
		{prefix: "sha256 blobs/chunked out-of-order", category: catPush, reason: chunksOrder},
		{prefix: "sha256 blobs/bad digest chunked", category: catPush, reason: chunksCheck},
		{prefix: "sha512 blobs/chunked multi", category: catPush, reason: chunks},
		{prefix: "sha512 blobs/chunked out-of-order", category: catPush, reason: chunksOrder},
		{prefix: "sha512 blobs/bad digest chunked", category: catPush, reason: chunksCheck},
	}
}

type options struct {
	categories  map[string]bool
	resultsDir  string
	suiteBin    string
	proxyBin    string
	suiteVer    string
	filter      string
	timeout     time.Duration
	verbose     bool
	strict      bool
	listXFail   bool
	keepWorkDir bool
	hold        bool
	ecrDigests  bool // the emulator stores sha256 only, as ECR
	// prefix serves the emulator's registry under this repository
	// prefix (ecr.registries, through auth.Router); "" is proxy.remoteurl.
	prefix   string
	expected []expectedFailure // defaultExpectedFailures
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
	if o.listXFail {
		for _, x := range o.expected {
			if x.ecrDigests && !o.ecrDigests {
				continue
			}
			fmt.Printf("%s/%s [%s]: %s\n", suiteRoot, x.prefix, x.category, x.reason)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	code := run(ctx, o)
	cancel()
	stop()
	os.Exit(code)
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	cats := fs.String("categories", "all", "comma-separated categories to run: "+strings.Join(allCategories, ", ")+", or all")
	fs.StringVar(&o.resultsDir, "results", "", "directory for junit.xml, report.html, results.yaml, suite and proxy output (default: a new temporary directory, kept)")
	fs.StringVar(&o.suiteBin, "suite-bin", "", "use this conformance binary instead of installing "+suiteModule+"@VERSION")
	fs.StringVar(&o.proxyBin, "proxy-bin", "", "use this proxy binary instead of building ./cmd/registry")
	fs.StringVar(&o.suiteVer, "suite-version", suiteVersion, "version of "+suiteModule+" to install")
	fs.StringVar(&o.filter, "filter", "", "only run tests whose name starts with this (OCI_FILTER_TEST), e.g. \""+suiteRoot+"/read-only/pull\"")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound on the whole run, builds included")
	fs.BoolVar(&o.verbose, "v", false, "print the suite's own report, each test and the proxy's log")
	fs.BoolVar(&o.strict, "strict", false, "count expected failures as failures")
	fs.BoolVar(&o.listXFail, "list-expected-failures", false, "print the expected failures and exit")
	fs.BoolVar(&o.keepWorkDir, "keep", false, "keep the work directory (binaries, proxy cache)")
	fs.BoolVar(&o.ecrDigests, "ecr-digests", false, "run the emulator with ECR's digests: sha256 only (by default it supports sha512 as well, as the suite's registry does)")
	fs.StringVar(&o.prefix, "prefix", "", "serve the emulator's registry under this repository prefix (ecr.registries), and run the suite on prefixed repositories")
	fs.BoolVar(&o.hold, "hold", false, "after the suite, keep the emulator and the proxy running until interrupted (or -timeout)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.expected = defaultExpectedFailures()
	o.categories = map[string]bool{}
	for _, c := range strings.Split(*cats, ",") {
		c = strings.TrimSpace(strings.ToLower(c))
		switch {
		case c == "":
		case c == "all":
			for _, a := range allCategories {
				o.categories[a] = true
			}
		case slices.Contains(allCategories, c):
			o.categories[c] = true
		default:
			return o, fmt.Errorf("unknown category %q (want %s or all)", c, strings.Join(allCategories, ", "))
		}
	}
	if len(o.categories) == 0 {
		return o, errors.New("no category selected")
	}
	return o, nil
}

func (o options) categoryList() string {
	var out []string
	for _, c := range allCategories {
		if o.categories[c] {
			out = append(out, c)
		}
	}
	return strings.Join(out, ",")
}

func run(ctx context.Context, o options) int {
	start := time.Now()
	// The emulator's distribution logs through logrus' global logger.
	logrus.SetOutput(io.Discard)

	work, err := os.MkdirTemp("", "ecr-proxy-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	if o.resultsDir == "" {
		o.resultsDir = filepath.Join(work, "results")
	}
	defer func() {
		if o.keepWorkDir {
			fmt.Printf("work directory kept: %s\n", work)
			return
		}
		// Keep only the results when they live in the work directory.
		entries, _ := os.ReadDir(work)
		for _, e := range entries {
			p := filepath.Join(work, e.Name())
			if p != o.resultsDir {
				_ = os.RemoveAll(p)
			}
		}
		if rel, err := filepath.Rel(work, o.resultsDir); err != nil || strings.HasPrefix(rel, "..") {
			_ = os.Remove(work)
		}
	}()
	if err := os.MkdirAll(o.resultsDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	o.resultsDir, _ = filepath.Abs(o.resultsDir)

	res, err := runSuite(ctx, o, work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		fmt.Printf("results: %s\n", o.resultsDir)
		return 1
	}
	return report(os.Stdout, o, res, time.Since(start))
}

// runSuite builds and starts everything, runs the suite and reads its
// report.
func runSuite(ctx context.Context, o options, work string) (outcome, error) {
	// One build at a time: the proxy, then the suite.
	proxyBin := o.proxyBin
	if proxyBin == "" {
		step("building the proxy (%s)", proxytest.Package)
		dir := filepath.Join(work, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return outcome{}, err
		}
		var err error
		if proxyBin, err = proxytest.Build(ctx, dir); err != nil {
			return outcome{}, err
		}
	}
	suiteBin := o.suiteBin
	if suiteBin == "" {
		step("installing %s@%s", suiteModule, o.suiteVer)
		var err error
		if suiteBin, err = installSuite(ctx, work, o.suiteVer); err != nil {
			return outcome{}, err
		}
	}

	step("starting the ECR emulator and seeding %s", repo1)
	// Loopback: registry and API on 127.0.0.1, S3 on 127.0.0.2.
	emu, err := ecrtest.Start(ecrtest.WithSHA512(!o.ecrDigests))
	if err != nil {
		return outcome{}, fmt.Errorf("start emulator: %w", err)
	}
	defer emu.Close()
	seed, err := seedContent(ctx, emu, repo1)
	if err != nil {
		return outcome{}, err
	}

	step("starting the proxy in front of %s", emu.RegistryURL())
	p, err := startProxy(ctx, proxyBin, emu, work, o.prefix)
	if err != nil {
		return outcome{}, err
	}
	defer func() {
		_ = p.Stop()
		_ = os.WriteFile(filepath.Join(o.resultsDir, "proxy.log"), []byte(p.Logs()), 0o644)
		if o.verbose {
			fmt.Printf("\n--- proxy log\n%s--- end of proxy log\n", p.Logs())
		}
	}()

	step("running the suite against http://%s (categories: %s)", p.Addr, o.categoryList())
	if err := os.WriteFile(filepath.Join(work, "oci-conformance.yaml"), nil, 0o644); err != nil {
		return outcome{}, err
	}
	// A reused -results directory must not hand an old junit.xml to this run.
	for _, f := range []string{"junit.xml", "results.yaml", "report.html"} {
		if err := os.Remove(filepath.Join(o.resultsDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return outcome{}, err
		}
	}
	stdout, stderr, runErr := runSuiteBinary(ctx, suiteBin, work, suiteEnv(o, p.Addr, seed, work))
	_ = os.WriteFile(filepath.Join(o.resultsDir, "suite-output.txt"), stdout, 0o644)
	_ = os.WriteFile(filepath.Join(o.resultsDir, "suite-log.txt"), stderr, 0o644)
	if o.verbose {
		fmt.Printf("\n--- suite output (its requests and responses: %s)\n%s--- end of suite output\n",
			filepath.Join(o.resultsDir, "suite-log.txt"), stdout)
	}
	if ctx.Err() != nil {
		return outcome{}, fmt.Errorf("suite: %w", ctx.Err())
	}
	// The suite exits 1 when a test fails: that is judged from its report.
	res, err := readOutcome(o.resultsDir, stdout)
	if err != nil {
		return outcome{}, errors.Join(err, runErr, fmt.Errorf("suite output:\n%s%s", stdout, stderr))
	}
	attachLoggedOutput(res.cases, stderr)
	if o.hold {
		fmt.Printf("--- holding: proxy at http://%s, emulator at %s (Ctrl-C to stop)\n", p.Addr, emu.RegistryURL())
		<-ctx.Done()
	}
	return res, nil
}

func step(format string, args ...any) {
	fmt.Printf("--- %s\n", fmt.Sprintf(format, args...))
}

// installSuite installs the suite's command into work/bin with the Go
// toolchain (through the module proxy, cached in the module and build
// caches) and returns the binary's path.
func installSuite(ctx context.Context, work, version string) (string, error) {
	gobin := filepath.Join(work, "bin")
	cmd := exec.CommandContext(ctx, "go", "install", suiteModule+"@"+version)
	cmd.Dir = work // outside this module: "go install pkg@version" ignores it anyway
	cmd.Env = append(withoutEnv(os.Environ(), "GOBIN", "GOFLAGS", "GOWORK"), "GOBIN="+gobin, "GOWORK=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", suiteModule, version, err, out)
	}
	return filepath.Join(gobin, filepath.Base(suiteModule)), nil
}

// seeded is what seedContent put into the emulator for the suite.
type seeded struct {
	tags      []string
	manifests []string
	blobs     []string
}

// seedContent writes the content the suite reads when it cannot push:
// an OCI image (config and two layers) under several tags, so that tag
// listing with "last" has something to skip, and an OCI index of two
// platform images. The suite only checks status codes (and digests where it
// knows them) for such read-only content.
func seedContent(ctx context.Context, emu *ecrtest.Emulator, repo string) (seeded, error) {
	var s seeded
	img, err := ecrtest.RandomImage(2, 4096)
	if err != nil {
		return s, err
	}
	imgTags := []string{"latest", "v1", "v2"}
	var imgDigest string
	for _, tag := range imgTags {
		if imgDigest, err = emu.Seed(ctx, repo+":"+tag, img); err != nil {
			return s, err
		}
	}
	blobs, err := imageBlobs(img)
	if err != nil {
		return s, err
	}
	idx, err := ecrtest.RandomIndex(2, 1, 1024)
	if err != nil {
		return s, err
	}
	idxDigest, err := emu.SeedIndex(ctx, repo+":multiarch", idx)
	if err != nil {
		return s, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return s, err
	}
	s.tags = append(imgTags, "multiarch")
	s.manifests = []string{imgDigest, idxDigest}
	for _, m := range im.Manifests {
		s.manifests = append(s.manifests, m.Digest.String())
	}
	s.blobs = blobs
	return s, nil
}

// imageBlobs returns the digests of img's config and layers.
func imageBlobs(img v1.Image) ([]string, error) {
	cfg, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	out := []string{cfg.String()}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		out = append(out, d.String())
	}
	return out, nil
}

// startProxy runs the proxy in front of emu with a hermetic environment:
// no credentials but the emulator's, no shared AWS files, no IMDS. With
// prefix, the emulator's registry is the one entry of ecr.registries.
func startProxy(ctx context.Context, bin string, emu *ecrtest.Emulator, work, prefix string) (*proxytest.Proxy, error) {
	home := filepath.Join(work, "proxy-home")
	cache := filepath.Join(work, "proxy-cache")
	for _, d := range []string{home, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	c := proxytest.ConfigOptions{
		RemoteURL:     emu.RegistryURL(),
		Region:        emu.Region(),
		RootDirectory: cache,
		// The suite's management category deletes tags, manifests and
		// blobs: DELETE reaches ECR only when enabled.
		ECRExtra: []string{"delete: enabled"},
	}
	emuEnv := emu.Env()
	if prefix != "" {
		c.RemoteURL, c.Region = "", ""
		c.ECRExtra = append(c.ECRExtra, "registries:",
			"  - prefix: "+prefix, "    url: "+emu.RegistryURL(), "    region: "+emu.Region())
		emuEnv = withoutEnv(emuEnv, "ECR")
	}
	cfgPath, err := proxytest.WriteConfig(work, c)
	if err != nil {
		return nil, err
	}
	env := append([]string{
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-credentials"),
		"OTEL_TRACES_EXPORTER=none",
	}, emuEnv...)
	p, err := proxytest.Start(ctx, proxytest.Config{Binary: bin, Args: []string{"serve", cfgPath}, Env: env})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// suiteEnv is the suite's whole environment. Every switch is written out,
// so that neither the caller's OCI_* variables nor an oci-conformance.yaml
// (the suite runs in the work directory) change the run.
func suiteEnv(o options, addr string, s seeded, work string) []string {
	on := func(c string) string { return strconv.FormatBool(o.categories[c]) }
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + work,
		"OCI_CONFIGURATION=" + filepath.Join(work, "oci-conformance.yaml"), // empty
		"OCI_VERSION=1.1",
		"OCI_REGISTRY=" + addr,
		"OCI_TLS=disabled",
		"OCI_REPO1=" + prefixed(o.prefix, repo1),
		"OCI_REPO2=" + prefixed(o.prefix, repo2),
		"OCI_RESULTS_DIR=" + o.resultsDir,
		"OCI_LOG=debug", // to suite-log.txt; failed tests' requests are read from it
		"OCI_API_PING=true",
		"OCI_API_PULL=" + on(catPull),
		"OCI_API_TAGS_LIST=" + on(catDiscovery),
		"OCI_API_REFERRER=" + on(catDiscovery),
		"OCI_API_PUSH=" + on(catPush),
		"OCI_API_BLOBS_MOUNT_ANONYMOUS=" + on(catPush),
		"OCI_API_TAGS_DELETE=" + on(catManagement),
		"OCI_API_MANIFESTS_DELETE=" + on(catManagement),
		"OCI_API_BLOBS_DELETE=" + on(catManagement),
	}
	if !o.categories[catPush] {
		// Content seeded in the emulator, read through the proxy. With
		// push on, the suite pushes (and reads) its own: it would also try
		// to push the read-only blobs, whose content it does not have.
		env = append(env,
			"OCI_RO_DATA_TAGS="+strings.Join(s.tags, " "),
			"OCI_RO_DATA_MANIFESTS="+strings.Join(s.manifests, " "),
			"OCI_RO_DATA_BLOBS="+strings.Join(s.blobs, " "))
	}
	if o.filter != "" {
		env = append(env, "OCI_FILTER_TEST="+o.filter)
	}
	return env
}

// prefixed is repo under prefix, as clients of the proxy name it.
func prefixed(prefix, repo string) string {
	if prefix == "" {
		return repo
	}
	return prefix + "/" + repo
}

// runSuiteBinary runs the suite in dir and returns its report (stdout) and
// its log (stderr). Its exit status only says whether some test failed.
func runSuiteBinary(ctx context.Context, bin, dir string, env []string) (stdout, stderr []byte, err error) {
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

func withoutEnv(env []string, keys ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(keys, k) {
			out = append(out, kv)
		}
	}
	return out
}

// testCase is one leaf test of the suite.
type testCase struct {
	Name   string `xml:"name,attr"`
	Status string `xml:"status,attr"` // passed, skipped, failure or error
	Errs   string `xml:"system-out"`  // the suite writes a test's errors here
	Output string `xml:"system-err"`  // and its requests and responses here
}

// outcome is what the suite reported.
type outcome struct {
	cases  []testCase
	source string // the file the cases were read from
}

// readOutcome reads junit.xml, or else the test tree the suite printed.
// The pinned suite panics while writing results.yaml, before junit.xml, when
// push is disabled (ReportResultsYAML dereferences r.State.Data["blobs-sha256"],
// which the skipped blob tests never create), so without push only the
// printed tree is there.
func readOutcome(resultsDir string, stdout []byte) (outcome, error) {
	path := filepath.Join(resultsDir, "junit.xml")
	b, err := os.ReadFile(path)
	if err == nil {
		cases, err := parseJUnit(b)
		return outcome{cases, path}, err
	}
	if !errors.Is(err, os.ErrNotExist) {
		return outcome{}, err
	}
	cases, err := parseTree(stdout)
	return outcome{cases, "the suite's printed report (no junit.xml)"}, err
}

// junitSuites is the part of the suite's junit.xml read here.
type junitSuites struct {
	Suites []struct {
		Cases []testCase `xml:"testcase"`
	} `xml:"testsuite"`
}

func parseJUnit(b []byte) ([]testCase, error) {
	var j junitSuites
	if err := xml.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("parse junit.xml: %w", err)
	}
	var cases []testCase
	for _, s := range j.Suites {
		cases = append(cases, s.Cases...)
	}
	if len(cases) == 0 {
		return nil, errors.New("junit.xml has no test case")
	}
	return cases, nil
}

// treeLine is a line of the suite's "Test results" tree: the node's full
// name and its status.
var treeLine = regexp.MustCompile(`^( *)(` + regexp.QuoteMeta(suiteRoot) + `.*): (Pass|Skip|Disabled|FAIL|Error|Unknown)$`)

// parseTree reads the leaves of the tree the suite prints first, as the
// junit report would list them: a leaf's error lines (" - ...") follow it.
func parseTree(out []byte) ([]testCase, error) {
	text := string(out)
	start := strings.Index(text, "Test results\n")
	if start < 0 {
		return nil, errors.New("the suite printed no test results")
	}
	lines := strings.Split(text[start+len("Test results\n"):], "\n")
	type node struct {
		depth int
		tc    testCase
	}
	var nodes []node
	for _, l := range lines {
		if l == "" {
			break // the tree ends with a blank line
		}
		if m := treeLine.FindStringSubmatch(l); m != nil {
			nodes = append(nodes, node{len(m[1]), testCase{Name: m[2], Status: treeStatus(m[3])}})
			continue
		}
		if len(nodes) > 0 { // an error of the last leaf, possibly multi-line
			n := &nodes[len(nodes)-1]
			n.tc.Errs += strings.TrimPrefix(strings.TrimLeft(l, " "), "- ") + "\n"
		}
	}
	var cases []testCase
	for i, n := range nodes {
		if i+1 < len(nodes) && nodes[i+1].depth > n.depth {
			continue // has children
		}
		cases = append(cases, n.tc)
	}
	if len(cases) == 0 {
		return nil, errors.New("the suite's test tree has no test")
	}
	return cases, nil
}

// failedOutput is the suite's debug log line with a failed test's requests
// and responses (slog's text format quotes both values).
var failedOutput = regexp.MustCompile(`msg="failed test output" name=("(?:[^"\\]|\\.)*") output=("(?:[^"\\]|\\.)*")`)

// attachLoggedOutput gives failed cases without output (those read from the
// printed tree) the requests and responses the suite logged for them.
func attachLoggedOutput(cases []testCase, log []byte) {
	outputs := map[string][]string{}
	for _, m := range failedOutput.FindAllSubmatch(log, -1) {
		name, err1 := strconv.Unquote(string(m[1]))
		out, err2 := strconv.Unquote(string(m[2]))
		if err1 == nil && err2 == nil {
			outputs[name] = append(outputs[name], out)
		}
	}
	for i := range cases {
		c := &cases[i]
		if c.Output != "" || (c.Status != "failure" && c.Status != "error") || len(outputs[c.Name]) == 0 {
			continue
		}
		c.Output, outputs[c.Name] = outputs[c.Name][0], outputs[c.Name][1:]
	}
}

// treeStatus maps the suite's status names to junit's, as its junit
// writer does.
func treeStatus(s string) string {
	switch s {
	case "Pass":
		return "passed"
	case "Skip", "Disabled":
		return "skipped"
	case "FAIL":
		return "failure"
	default:
		return "error"
	}
}

// tally is the outcome of a run.
type tally struct {
	passed, skipped int
	failed          []testCase        // failures and errors not expected
	xfailed         []testCase        // expected failures
	xpassed         []expectedFailure // expected failures whose tests all passed
	reasons         map[string]string // test name -> expected failure reason
}

func classify(cases []testCase, o options) tally {
	t := tally{reasons: map[string]string{}}
	seen := map[int]bool{}    // expected failures with a test
	failing := map[int]bool{} // expected failures with a failing test
	for _, c := range cases {
		x := matchExpected(c.Name, o)
		if x >= 0 {
			seen[x] = true
		}
		switch c.Status {
		case "passed":
			t.passed++
		case "skipped":
			t.skipped++
		default: // failure, error, or anything else
			if x >= 0 && !o.strict {
				failing[x] = true
				t.xfailed = append(t.xfailed, c)
				t.reasons[c.Name] = o.expected[x].reason
			} else {
				t.failed = append(t.failed, c)
			}
		}
	}
	for i, x := range o.expected {
		if seen[i] && !failing[i] && !o.strict {
			t.xpassed = append(t.xpassed, x)
		}
	}
	return t
}

// matchExpected returns the index of the expected failure covering the test
// name, or -1. Only entries of categories that ran apply.
func matchExpected(name string, o options) int {
	rel := strings.TrimPrefix(name, suiteRoot+"/")
	for i, x := range o.expected {
		if o.categories[x.category] && (!x.ecrDigests || o.ecrDigests) && strings.HasPrefix(rel, x.prefix) {
			return i
		}
	}
	return -1
}

func report(w io.Writer, o options, res outcome, elapsed time.Duration) int {
	t := classify(res.cases, o)
	if o.verbose {
		fmt.Fprintf(w, "tests, from %s:\n", res.source)
		for _, c := range res.cases {
			fmt.Fprintf(w, "  %-8s %s\n", c.Status, c.Name)
		}
	}
	const detailed = 5 // failures shown with their requests, unless -v
	for i, c := range t.failed {
		if i == 50 && !o.verbose {
			fmt.Fprintf(w, "... and %d more failures (see %s)\n", len(t.failed)-i, res.source)
			break
		}
		fmt.Fprintf(w, "FAIL %s (%s)\n%s\n", c.Name, c.Status, indent(c.Errs))
		if c.Output != "" && (o.verbose || i < detailed) {
			fmt.Fprintf(w, "%s\n", indent(truncateLines(c.Output, 60, o.verbose)))
		}
	}
	for _, c := range t.xfailed {
		fmt.Fprintf(w, "expected failure: %s\n  why: %s\n", c.Name, t.reasons[c.Name])
	}
	for _, x := range t.xpassed {
		fmt.Fprintf(w, "NOTE expected failure %q passed: remove it from defaultExpectedFailures and README.md\n", x.prefix)
	}
	fmt.Fprintf(w, "suite %s@%s, categories %s, %s; reports in %s\n",
		filepath.Base(suiteModule), o.suiteVer, o.categoryList(), elapsed.Round(time.Second), o.resultsDir)
	if len(t.xfailed) > 0 {
		fmt.Fprintf(w, "%d expected failure(s), not counted below\n", len(t.xfailed))
	}
	fmt.Fprintf(w, "conformance: %d passed, %d failed, %d skipped\n", t.passed, len(t.failed), t.skipped)
	if len(t.failed) > 0 || t.passed == 0 {
		return 1
	}
	return 0
}

func truncateLines(s string, n int, all bool) string {
	lines := strings.Split(s, "\n")
	if all || len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n[%d more lines]", len(lines)-n)
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no detail)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
