package validate

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// stringOrList is an IAM policy element that is a string or a list of them.
type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

type policy struct {
	Version   string
	Statement []struct {
		Sid      string
		Effect   string
		Action   stringOrList
		Resource stringOrList
	}
}

func TestIAMPolicyAllowsWhatTheProxyCalls(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../ec2/iam-policy.json")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var p policy
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode iam-policy.json: %v", err)
	}
	if p.Version != "2012-10-17" {
		t.Errorf("Version %q, want 2012-10-17", p.Version)
	}
	allowed := map[string][]string{} // action → resources
	for _, st := range p.Statement {
		if st.Effect != "Allow" {
			t.Errorf("statement %s: Effect %q, want Allow", st.Sid, st.Effect)
		}
		for _, a := range st.Action {
			if strings.Contains(a, "*") {
				t.Errorf("statement %s: wildcard action %q", st.Sid, a)
			}
			allowed[a] = append(allowed[a], st.Resource...)
		}
	}
	want := []string{
		"ecr:GetAuthorizationToken",
		"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
		"ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
	}
	for _, a := range want {
		if _, ok := allowed[a]; !ok {
			t.Errorf("policy does not allow %s", a)
		}
	}
	for a := range allowed {
		if !slices.Contains(want, a) {
			t.Errorf("policy allows %s, which the proxy does not call", a)
		}
	}
	if r := allowed["ecr:GetAuthorizationToken"]; !slices.Equal(r, []string{"*"}) {
		t.Errorf("ecr:GetAuthorizationToken on %v, want on * (it has no resource)", r)
	}
}

func TestEC2ExampleUsesTheInstanceRole(t *testing.T) {
	t.Parallel()
	env, err := os.ReadFile("../ec2/ecr-proxy.env")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("env line %q is not KEY=value", line)
		}
		vars[k] = v
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_EC2_METADATA_DISABLED"} {
		if _, ok := vars[k]; ok {
			t.Errorf("env sets %s: the instance role must come from IMDS", k)
		}
	}
	if !ecrURL.MatchString(vars["ECR"]) || vars["PORT"] == "" {
		t.Errorf("env ECR=%q PORT=%q: both required", vars["ECR"], vars["PORT"])
	}
	if _, err := parseSize(vars["CACHE_MAX_SIZE"]); err != nil {
		t.Errorf("CACHE_MAX_SIZE=%q: %v", vars["CACHE_MAX_SIZE"], err)
	}

	unit, err := os.ReadFile("../ec2/ecr-proxy.service")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	for _, line := range []string{
		"EnvironmentFile=/etc/ecr-proxy/ecr-proxy.env",
		"ExecStart=/usr/local/bin/ecr-proxy serve",
		"CacheDirectory=ecr-proxy", // /var/cache/ecr-proxy, CACHE_DIR
		"User=ecr-proxy",
	} {
		if !slices.Contains(strings.Split(string(unit), "\n"), line) {
			t.Errorf("ecr-proxy.service lacks %q", line)
		}
	}
	if vars["CACHE_DIR"] != "/var/cache/ecr-proxy" {
		t.Errorf("CACHE_DIR=%q, want the unit's CacheDirectory /var/cache/ecr-proxy", vars["CACHE_DIR"])
	}
}
