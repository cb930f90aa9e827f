package main

import (
	"strings"
	"testing"
)

// tree is the start of what the pinned suite prints, with a multi-line
// error under a failed leaf.
const tree = `Test results
OCI Conformance Test: FAIL
  OCI Conformance Test/ping: Pass
  OCI Conformance Test/empty: FAIL
    OCI Conformance Test/empty/tag list: Pass
    OCI Conformance Test/empty/referrers: FAIL
     - header value mismatch for "Content-Type"
unexpected status code, expected one of [200], received 404
  OCI Conformance Test/sha256 blobs: Disabled
  OCI Conformance Test/read-only: FAIL
    OCI Conformance Test/read-only/tag-list: FAIL
     - tag "latest" returned when last set to "multiarch"
    OCI Conformance Test/read-only/pull: Pass
      OCI Conformance Test/read-only/pull/blob-get: Pass

Configuration:
  registry: 127.0.0.1:1
`

func TestParseTree(t *testing.T) {
	cases, err := parseTree([]byte("WARNING: something\n" + tree))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cases {
		got = append(got, c.Status+" "+strings.TrimPrefix(c.Name, suiteRoot+"/"))
	}
	want := []string{
		"passed ping",
		"passed empty/tag list",
		"failure empty/referrers",
		"skipped sha256 blobs",
		"failure read-only/tag-list",
		"passed read-only/pull/blob-get",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("leaves:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if e := cases[2].Errs; !strings.Contains(e, "Content-Type") || !strings.Contains(e, "received 404") {
		t.Errorf("referrers errors = %q", e)
	}
}

func TestParseJUnit(t *testing.T) {
	const x = `<testsuites tests="2" failures="1"><testsuite name="OCI Conformance Test" tests="2" failures="1" errors="0" time="1">
  <testcase name="OCI Conformance Test/ping" status="passed"></testcase>
  <testcase name="OCI Conformance Test/empty/referrers" status="failure"><system-out>unexpected status</system-out><system-err>~~~ REQUEST ~~~</system-err></testcase>
</testsuite></testsuites>`
	cases, err := parseJUnit([]byte(x))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2 || cases[1].Status != "failure" || cases[1].Errs != "unexpected status" || cases[1].Output != "~~~ REQUEST ~~~" {
		t.Fatalf("cases = %+v", cases)
	}
}

func TestClassify(t *testing.T) {
	cases := []testCase{
		{Name: suiteRoot + "/ping", Status: "passed"},
		{Name: suiteRoot + "/empty/referrers", Status: "failure"},
		{Name: suiteRoot + "/read-only/tag-list", Status: "passed"},
		{Name: suiteRoot + "/read-only/pull/blob-get", Status: "error"},
		{Name: suiteRoot + "/sha256 blobs", Status: "skipped"},
	}
	// An example expected failure in a category the real ones are not in.
	example := []expectedFailure{{prefix: "empty/referrers", category: catDiscovery, reason: "example"}}
	o, err := parseFlags([]string{"-categories", "pull,discovery"})
	if err != nil {
		t.Fatal(err)
	}
	o.expected = example
	got := classify(cases, o)
	if got.passed != 2 || got.skipped != 1 || len(got.failed) != 1 || len(got.xfailed) != 1 || len(got.xpassed) != 0 {
		t.Fatalf("tally = %+v", got)
	}
	if got.failed[0].Name != suiteRoot+"/read-only/pull/blob-get" {
		t.Fatalf("tally = %+v", got)
	}
	// An expected failure that passes is reported, to be removed.
	cases[1].Status = "passed"
	if got := classify(cases, o); len(got.xpassed) != 1 || got.xpassed[0].prefix != "empty/referrers" {
		t.Fatalf("referrers passing: tally = %+v", got)
	}
	cases[1].Status = "failure"
	// Expected failures of a category that did not run do not apply.
	o, _ = parseFlags([]string{"-categories", "pull"})
	o.expected = example
	if got := classify(cases, o); len(got.failed) != 2 || len(got.xfailed) != 0 {
		t.Fatalf("pull only: tally = %+v", got)
	}
	o, _ = parseFlags([]string{"-categories", "pull,discovery", "-strict"})
	o.expected = example
	if got := classify(cases, o); len(got.failed) != 2 {
		t.Fatalf("strict: tally = %+v", got)
	}
}

func TestAttachLoggedOutput(t *testing.T) {
	log := `time=x level=WARN msg="failed test" name="OCI Conformance Test/empty/referrers" error="boom"
time=x level=DEBUG msg="failed test output" name="OCI Conformance Test/empty/referrers" output="line \"1\"\nline 2"
`
	cases := []testCase{{Name: suiteRoot + "/empty/referrers", Status: "failure"}}
	attachLoggedOutput(cases, []byte(log))
	if cases[0].Output != "line \"1\"\nline 2" {
		t.Fatalf("output = %q", cases[0].Output)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-categories", "all"})
	if err != nil || o.categoryList() != "pull,discovery,push,management" {
		t.Fatalf("all: %v %q", err, o.categoryList())
	}
	if _, err := parseFlags([]string{"-categories", "pul"}); err == nil {
		t.Fatal("unknown category accepted")
	}
}

// TestClassifyECRDigests: the sha512 tests are expected to fail only when
// the emulator keeps ECR's sha256-only digests; the 5 MiB chunk limit
// applies to both algorithms either way.
func TestClassifyECRDigests(t *testing.T) {
	cases := []testCase{
		{Name: suiteRoot + "/sha512/push/blob-post-put", Status: "failure"},
		{Name: suiteRoot + "/sha512 blobs/chunked multi/blob-patch-chunked", Status: "failure"},
	}
	o, err := parseFlags([]string{"-categories", "push"})
	if err != nil {
		t.Fatal(err)
	}
	if got := classify(cases, o); len(got.failed) != 1 || got.failed[0].Name != cases[0].Name || len(got.xfailed) != 1 {
		t.Errorf("sha512 supported: tally = %+v, want the upload failing and the chunk expected", got)
	}
	o, err = parseFlags([]string{"-categories", "push", "-ecr-digests"})
	if err != nil {
		t.Fatal(err)
	}
	if got := classify(cases, o); len(got.failed) != 0 || len(got.xfailed) != 2 {
		t.Errorf("ECR's digests: tally = %+v, want both expected", got)
	}
}
