package validate

import (
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

const clusterDir = "../kubernetes-cluster"

// clusterParts are the proxy's and Redis's objects of the cluster example.
type clusterParts struct {
	m                  *manifests
	proxy, redis       *appsv1.Deployment
	proxySvc, redisSvc *corev1.Service
	env                map[string]corev1.EnvVar
	envOrder           []string
}

func loadCluster(t *testing.T) clusterParts {
	t.Helper()
	m := loadManifestsIn(t, clusterDir)
	c := clusterParts{m: m, env: map[string]corev1.EnvVar{}}
	for _, d := range m.deployments {
		switch d.Name {
		case "ecr-proxy":
			c.proxy = d
		case "ecr-proxy-redis":
			c.redis = d
		}
	}
	for _, s := range m.services {
		switch s.Name {
		case "ecr-proxy":
			c.proxySvc = s
		case "ecr-proxy-redis":
			c.redisSvc = s
		}
	}
	if c.proxy == nil || c.redis == nil || c.proxySvc == nil || c.redisSvc == nil || len(m.serviceAccounts) != 1 || len(m.claims) != 0 {
		t.Fatalf("want Deployments and Services ecr-proxy and ecr-proxy-redis, one ServiceAccount and no volume claim; got %v", m.files)
	}
	for _, e := range c.proxy.Spec.Template.Spec.Containers[0].Env {
		c.env[e.Name] = e
		c.envOrder = append(c.envOrder, e.Name)
	}
	return c
}

func TestClusterKustomizationListsEveryManifest(t *testing.T) {
	t.Parallel()
	c := loadCluster(t)
	var want []string
	for f := range c.m.files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	got := slices.Clone(c.m.kustomization.Resources)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Errorf("kustomization resources = %v, want every manifest: %v", got, want)
	}
}

// TestClusterExampleSharesOneCache: three replicas, configured for the
// bucket, the cluster-wide bound and Redis, each advertising its pod IP,
// with nothing on the pod but the spool.
func TestClusterExampleSharesOneCache(t *testing.T) {
	t.Parallel()
	c := loadCluster(t)
	if r := c.proxy.Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("replicas = %v, want 3", r)
	}
	if c.proxy.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("strategy %q, want RollingUpdate: nothing is kept on the pods", c.proxy.Spec.Strategy.Type)
	}
	for _, k := range []string{"ECR", "PORT", "CACHE_S3_BUCKET", "CACHE_MAX_SIZE", "REDIS_ADDR", "ADVERTISE_URL"} {
		if e, ok := c.env[k]; !ok || (e.Value == "" && e.ValueFrom == nil) {
			t.Errorf("the proxy's environment lacks %s", k)
		}
	}
	for _, k := range []string{"CACHE_DIR", "CACHE_S3_ACCESS_KEY_ID", "CACHE_S3_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"} {
		if _, ok := c.env[k]; ok {
			t.Errorf("the proxy's environment sets %s: the bucket is reached with the IRSA role, nothing is cached on the pod", k)
		}
	}
	if !ecrURL.MatchString(c.env["ECR"].Value) {
		t.Errorf("ECR=%q is not an ECR registry URL", c.env["ECR"].Value)
	}
	// ADVERTISE_URL names the pod's IP, defined before it (Kubernetes
	// expands $(VAR) only from variables listed earlier).
	adv := c.env["ADVERTISE_URL"].Value
	ip, ok := c.env["POD_IP"]
	if !ok || ip.ValueFrom == nil || ip.ValueFrom.FieldRef == nil || ip.ValueFrom.FieldRef.FieldPath != "status.podIP" ||
		slices.Index(c.envOrder, "POD_IP") > slices.Index(c.envOrder, "ADVERTISE_URL") {
		t.Errorf("POD_IP must come from status.podIP and precede ADVERTISE_URL")
	}
	if adv != "http://$(POD_IP):"+c.env["PORT"].Value {
		t.Errorf("ADVERTISE_URL=%q, want http://$(POD_IP):<PORT>", adv)
	}
	// REDIS_ADDR reaches the Redis Service, which selects the Redis pods.
	host, port, err := net.SplitHostPort(c.env["REDIS_ADDR"].Value)
	if err != nil || host != c.redisSvc.Name || port != "6379" || len(c.redisSvc.Spec.Ports) != 1 || c.redisSvc.Spec.Ports[0].Port != 6379 {
		t.Errorf("REDIS_ADDR=%q does not name the Service %s on 6379", c.env["REDIS_ADDR"].Value, c.redisSvc.Name)
	}
	for k, v := range c.redisSvc.Spec.Selector {
		if c.redis.Spec.Template.Labels[k] != v {
			t.Errorf("the Redis Service selects %s=%s, which its pods lack", k, v)
		}
	}
	// The spool (/cache/ecr-proxy-spool, where the cache directory was)
	// and /tmp: writable and sized, under a read-only root; nothing else.
	pod := c.proxy.Spec.Template.Spec
	var mounted []string
	for _, m := range pod.Containers[0].VolumeMounts {
		mounted = append(mounted, m.MountPath)
	}
	slices.Sort(mounted)
	if !slices.Equal(mounted, []string{"/cache", "/tmp"}) {
		t.Errorf("volume mounts %v: want /cache (the spool) and /tmp", mounted)
	}
	for _, v := range pod.Volumes {
		if v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
			t.Errorf("volume %s: want a sized emptyDir", v.Name)
		}
	}
	if _, ok := c.env["SPOOL_DIR"]; ok && !strings.HasPrefix(c.env["SPOOL_DIR"].Value, "/cache/") && !strings.HasPrefix(c.env["SPOOL_DIR"].Value, "/tmp/") {
		t.Errorf("SPOOL_DIR=%q is on no writable volume", c.env["SPOOL_DIR"].Value)
	}
	sa := c.m.serviceAccounts[0]
	if pod.ServiceAccountName != sa.Name || !roleARN.MatchString(sa.Annotations["eks.amazonaws.com/role-arn"]) {
		t.Errorf("the pods must run as the ServiceAccount %s with an IRSA role annotation", sa.Name)
	}
}

// TestClusterBucketPolicy: the bucket policy allows what distribution's s3
// driver calls, on the bucket and its objects, and nothing else.
func TestClusterBucketPolicy(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(clusterDir + "/iam-policy-s3.json")
	if err != nil {
		t.Fatal(err)
	}
	var p policy
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	allowed := map[string]string{}
	for _, st := range p.Statement {
		for _, a := range st.Action {
			for _, r := range st.Resource {
				allowed[a] = r
			}
		}
	}
	want := map[string]string{
		"s3:ListBucket": "arn:aws:s3:::team-ecr-cache", "s3:GetBucketLocation": "arn:aws:s3:::team-ecr-cache",
		"s3:ListBucketMultipartUploads": "arn:aws:s3:::team-ecr-cache",
		"s3:GetObject":                  "arn:aws:s3:::team-ecr-cache/*", "s3:PutObject": "arn:aws:s3:::team-ecr-cache/*",
		"s3:DeleteObject": "arn:aws:s3:::team-ecr-cache/*", "s3:ListMultipartUploadParts": "arn:aws:s3:::team-ecr-cache/*",
		"s3:AbortMultipartUpload": "arn:aws:s3:::team-ecr-cache/*",
	}
	for a, r := range want {
		if allowed[a] != r {
			t.Errorf("%s on %q, want on %q", a, allowed[a], r)
		}
	}
	for a := range allowed {
		if _, ok := want[a]; !ok {
			t.Errorf("%s is allowed and not needed", a)
		}
	}
}
