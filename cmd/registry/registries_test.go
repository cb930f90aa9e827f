package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	regShared = "https://111111111111.dkr.ecr.us-east-1.amazonaws.com"
	regProd   = "https://222222222222.dkr.ecr.eu-west-1.amazonaws.com"
	roleProd  = "arn:aws:iam::222222222222:role/ecr-proxy-pull"
)

// registriesBase is a valid configuration with two registries.
const registriesBase = `version: 0.1
storage:
  filesystem:
    rootdirectory: /tmp/x
ecr:
  push: anonymous
  renewinterval: 5h
  registries:
    - prefix: shared
      url: ` + regShared + `
    - prefix: team/prod
      url: ` + regProd + `
      role: ` + roleProd + `
      externalid: ext-7
      renewinterval: 2h
`

func TestRegistriesFromTheFile(t *testing.T) {
	clearRegionEnv(t)
	s, err := loadSettings(writeFile(t, registriesBase), envMap())
	if err != nil {
		t.Fatal(err)
	}
	want := []upstreamRegistry{
		{prefix: "shared", url: regShared, region: "us-east-1", renew: 5 * time.Hour},
		{prefix: "team/prod", url: regProd, region: "eu-west-1", role: roleProd, externalID: "ext-7", renew: 2 * time.Hour},
	}
	if len(s.upstreams) != len(want) {
		t.Fatalf("upstreams %+v, want %+v", s.upstreams, want)
	}
	for i := range want {
		if s.upstreams[i] != want[i] {
			t.Errorf("upstream %d = %+v, want %+v", i, s.upstreams[i], want[i])
		}
	}
	if s.dist.Proxy.RemoteURL != virtualUpstream {
		t.Errorf("proxy.remoteurl = %q, want the virtual upstream", s.dist.Proxy.RemoteURL)
	}
	// distribution logs "proxy cache to https://ecr-registries.invalid";
	// a note after the start line says what that is.
	notes := strings.Join(s.notes, "\n")
	if !strings.Contains(notes, virtualUpstream) || !strings.Contains(notes, "never dialled") {
		t.Errorf("notes %q: want one explaining the virtual upstream %s", s.notes, virtualUpstream)
	}
	if f := fmt.Sprint(s.startupFields()["virtual_upstream"]); !strings.HasPrefix(f, virtualUpstream) {
		t.Errorf("start line's virtual_upstream = %q, want %s", f, virtualUpstream)
	}
}

func TestOneRegistryWithoutPrefixIsTheDefault(t *testing.T) {
	clearRegionEnv(t)
	s, err := loadSettings(writeFile(t, validBase), envMap())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.upstreams) != 1 || s.upstreams[0].prefix != "" || s.upstreams[0].url != "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com" ||
		s.upstreams[0].region != "eu-west-1" {
		t.Errorf("upstreams %+v, want proxy.remoteurl alone, no prefix", s.upstreams)
	}
}

func TestRegistriesFromTheEnvironment(t *testing.T) {
	clearRegionEnv(t)
	v := "shared=" + regShared + "; team/prod=" + regProd + ",role=" + roleProd + ",externalid=ext-7,renewinterval=1.5"
	s, err := loadSettings("", envMap(envECRRegistries, v, envPort, "5000"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.upstreams) != 2 || s.upstreams[1].role != roleProd || s.upstreams[1].externalID != "ext-7" ||
		s.upstreams[1].renew != 90*time.Minute || s.upstreams[0].renew != 6*time.Hour || s.upstreams[0].prefix != "shared" {
		t.Errorf("upstreams %+v", s.upstreams)
	}
}

func TestRegistriesRejects(t *testing.T) {
	clearRegionEnv(t)
	replace := func(old, repl string) string { return strings.Replace(registriesBase, old, repl, 1) }
	files := []struct {
		name    string
		yaml    string
		wantErr []string
	}{
		{"overlapping prefixes", replace("prefix: team/prod", "prefix: shared/prod"),
			[]string{"ecr.registries[].prefix", `"shared"`, `"shared/prod"`, "overlapping"}},
		{"equal prefixes", replace("prefix: team/prod", "prefix: shared"),
			[]string{"overlapping", `"shared"`}},
		{"bad prefix", replace("prefix: team/prod", "prefix: /Team"),
			[]string{"ecr.registries[1].prefix", `"/Team"`}},
		{"bad url", replace("url: "+regProd, "url: ftp://x"),
			[]string{"ecr.registries[1].url", `"ftp://x"`}},
		{"bad role", replace("role: "+roleProd, "role: admin"),
			[]string{"ecr.registries[1].role", `"admin"`}},
		{"renew too long", replace("renewinterval: 2h", "renewinterval: 13h"),
			[]string{"ecr.registries[1].renewinterval", "13h"}},
		{"remoteurl too", registriesBase + "proxy:\n  remoteurl: " + regShared + "\n",
			[]string{"proxy.remoteurl", regShared, "ecr.registries"}},
		{"ecr.region too", replace("  push: anonymous\n", "  push: anonymous\n  region: us-west-2\n"),
			[]string{"ecr.region", "us-west-2"}},
		{"no region", replace("url: "+regProd, "url: https://registry.example"),
			[]string{"ecr.registries[1].url", `"https://registry.example"`, "ecr.registries[1].region", "no AWS region"}},
		{"unknown key", replace("externalid: ext-7", "externalID: ext-7"),
			[]string{"ecr.registries[1].externalID", "externalid"}},
	}
	for _, tc := range files {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSettings(writeFile(t, tc.yaml), envMap())
			assertErrHas(t, err, tc.wantErr)
		})
	}
	envs := []struct {
		name    string
		env     []string
		wantErr []string
	}{
		{"ECR and ECR_REGISTRIES", []string{envECR, regShared, envECRRegistries, "a=" + regProd}, []string{"ECR", "ECR_REGISTRIES"}},
		{"no url", []string{envECRRegistries, "shared"}, []string{"ECR_REGISTRIES entry 1", `"shared"`}},
		{"unknown field", []string{envECRRegistries, "a=" + regProd + ",rolearn=x"}, []string{"ECR_REGISTRIES entry 1", `"rolearn"`}},
		{"overlap", []string{envECRRegistries, "a=" + regProd + " a/b=" + regShared}, []string{"ECR_REGISTRIES prefixes", "overlapping", `"a"`, `"a/b"`}},
		{"bad url", []string{envECRRegistries, "a=ftp://x"}, []string{"ECR_REGISTRIES entry 1 url", `"ftp://x"`}},
		{"bad role", []string{envECRRegistries, "a=" + regProd + ";b=" + regShared + ",role=admin"}, []string{"ECR_REGISTRIES entry 2 role", `"admin"`}},
		{"no region", []string{envECRRegistries, "a=https://registry.example"}, []string{"ECR_REGISTRIES entry 1 url", "ECR_REGISTRIES entry 1 region"}},
	}
	for _, tc := range envs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSettings("", envMap(append(tc.env, envPort, "5000")...))
			assertErrHas(t, err, tc.wantErr)
		})
	}
}

func assertErrHas(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one with %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// TestRegistriesErrorsNameTheirOwnKeys: errors about an entry name the
// entry's keys, never ecr.region (refused with ecr.registries) nor, for
// ECR_REGISTRIES, the file's keys.
func TestRegistriesErrorsNameTheirOwnKeys(t *testing.T) {
	clearRegionEnv(t)
	_, err := loadSettings(writeFile(t, strings.Replace(registriesBase, "url: "+regProd, "url: https://registry.example", 1)), envMap())
	if err == nil || strings.Contains(err.Error(), "ecr.region") {
		t.Errorf("no region: %v; want an error that does not suggest ecr.region", err)
	}
	_, err = loadSettings("", envMap(envECRRegistries, "a=ftp://x", envPort, "5000"))
	if err == nil || strings.Contains(err.Error(), "ecr.registries") {
		t.Errorf("ECR_REGISTRIES with a bad url: %v; want an error naming ECR_REGISTRIES, not ecr.registries", err)
	}
}

// TestRegistryRegionDifferingFromItsHostIsNoted: a registry's region
// that is not its host's is logged at start, naming the entry's key.
func TestRegistryRegionDifferingFromItsHostIsNoted(t *testing.T) {
	clearRegionEnv(t)
	s, err := loadSettings(writeFile(t, strings.Replace(registriesBase, "      renewinterval: 2h\n", "      renewinterval: 2h\n      region: us-west-2\n", 1)), envMap())
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(s.notes, "\n")
	if !strings.Contains(notes, "ecr.registries[1].region us-west-2 differs from eu-west-1") || strings.Contains(notes, "ecr.registries[0]") {
		t.Errorf("notes:\n%s\nwant one for ecr.registries[1].region only", notes)
	}
	if s.upstreams[1].region != "us-west-2" {
		t.Errorf("region of ecr.registries[1] = %q, want us-west-2 as configured", s.upstreams[1].region)
	}
}
