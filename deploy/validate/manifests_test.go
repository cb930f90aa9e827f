package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

const manifestDir = "../kubernetes"

// kustomization is the part of a kustomization.yaml checked here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// manifests are the decoded objects of deploy/kubernetes.
type manifests struct {
	kustomization   *kustomization
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	claims          []*corev1.PersistentVolumeClaim
	files           map[string][]string // file name → "Kind/name" of its objects
}

// strictDecoder decodes the built-in kinds ecr-proxy's manifests use and
// fails on unknown fields, duplicate keys and wrong types.
func strictDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// splitDocuments returns the non-empty YAML documents of data.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// decode adds the objects of one file to m.
func (m *manifests) decode(name string, data []byte) error {
	docs, err := splitDocuments(data)
	if err != nil {
		return fmt.Errorf("split documents: %w", err)
	}
	if len(docs) == 0 {
		return errors.New("no object")
	}
	dec := strictDecoder()
	for i, doc := range docs {
		var tm metav1.TypeMeta
		if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if tm.Kind == "Kustomization" {
			var k kustomization
			if err := sigsyaml.Unmarshal(doc, &k); err != nil {
				return fmt.Errorf("document %d: %w", i, err)
			}
			if k.APIVersion != "kustomize.config.k8s.io/v1beta1" {
				return fmt.Errorf("document %d: Kustomization apiVersion %q", i, k.APIVersion)
			}
			m.kustomization = &k
			m.files[name] = append(m.files[name], "Kustomization")
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return fmt.Errorf("document %d (%s %s): %w", i, tm.APIVersion, tm.Kind, err)
		}
		meta, ok := obj.(metav1.Object)
		if !ok {
			return fmt.Errorf("document %d: %s has no object metadata", i, gvk)
		}
		if errs := validation.IsDNS1123Subdomain(meta.GetName()); len(errs) > 0 {
			return fmt.Errorf("document %d: %s name %q: %s", i, gvk.Kind, meta.GetName(), strings.Join(errs, "; "))
		}
		if meta.GetNamespace() != "" {
			return fmt.Errorf("document %d: %s %s names namespace %q; the manifests are namespace-agnostic", i, gvk.Kind, meta.GetName(), meta.GetNamespace())
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ServiceAccount:
			m.serviceAccounts = append(m.serviceAccounts, o)
		case *corev1.PersistentVolumeClaim:
			m.claims = append(m.claims, o)
		default:
			return fmt.Errorf("document %d: unexpected kind %s", i, gvk)
		}
		m.files[name] = append(m.files[name], gvk.Kind+"/"+meta.GetName())
	}
	return nil
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	return loadManifestsIn(t, manifestDir)
}

// loadManifestsIn decodes every manifest of dir strictly.
func loadManifestsIn(t *testing.T, dir string) *manifests {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.y*ml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	m := &manifests{files: map[string][]string{}}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if err := m.decode(filepath.Base(p), data); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func TestManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.serviceAccounts) != 1 || len(m.claims) != 1 || m.kustomization == nil {
		t.Fatalf("want one Deployment, Service, ServiceAccount, PersistentVolumeClaim and Kustomization; got %v", m.files)
	}
}

// TestStrictDecodingCatchesMistakes shows that the decoder is strict: each
// of these mistakes must fail.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ doc, want string }{
		"misspelt field": {want: `unknown field "spec.selectr"`, doc: `apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  selectr: {app: x}
  ports: [{port: 5000}]
`},
		"field at the wrong level": {want: `unknown field "spec.template.spec.livenessProbe"`, doc: `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers:
        - name: x
          image: x
          readinessProbe: {httpGet: {path: /healthz, port: 5000}}
      livenessProbe: {httpGet: {path: /healthz, port: 5000}}
`},
		"wrong type": {want: `cannot unmarshal string`, doc: `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: x}
spec:
  accessModes: ReadWriteOnce
`},
		"duplicate key": {want: `already set`, doc: `apiVersion: v1
kind: ServiceAccount
metadata:
  name: first
  name: second
`},
		"unknown kind": {want: `no kind "Servce"`, doc: `apiVersion: v1
kind: Servce
metadata: {name: x}
`},
		"invalid name": {want: `RFC 1123`, doc: `apiVersion: v1
kind: ServiceAccount
metadata: {name: ECR_Proxy}
`},
		"namespace": {want: `namespace-agnostic`, doc: `apiVersion: v1
kind: ServiceAccount
metadata: {name: x, namespace: default}
`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := &manifests{files: map[string][]string{}}
			err := m.decode("bad.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decode error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	var want []string
	for f := range m.files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	got := slices.Clone(m.kustomization.Resources)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Errorf("kustomization resources = %v, want every manifest: %v", got, want)
	}
	if m.kustomization.Namespace != "" {
		t.Errorf("kustomization sets namespace %q; leave it to the user", m.kustomization.Namespace)
	}
	image := m.deployments[0].Spec.Template.Spec.Containers[0].Image
	name, _, _ := strings.Cut(image, ":")
	if len(m.kustomization.Images) != 1 || m.kustomization.Images[0].Name != name {
		t.Errorf("kustomization images %+v: want one entry for the container image %q", m.kustomization.Images, name)
	}
}

// ecrURL is an ECR registry URL as the ECR variable takes it.
var ecrURL = regexp.MustCompile(`^https://[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`)

// roleARN is an IAM role ARN, as IRSA's annotation takes it.
var roleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$`)

func TestDeploymentRunsTheProxy(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	d := m.deployments[0]
	pod := d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas = %v, want 1 (the cache is one ReadWriteOnce volume)", d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy = %q, want Recreate: a ReadWriteOnce volume cannot be mounted by the old and the new pod at once", d.Spec.Strategy.Type)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		t.Fatalf("selector: %v", err)
	}
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v", sel, d.Spec.Template.Labels)
	}

	// Identity: the service account, with an IRSA role.
	if !slices.ContainsFunc(m.serviceAccounts, func(sa *corev1.ServiceAccount) bool { return sa.Name == pod.ServiceAccountName }) {
		t.Errorf("serviceAccountName %q: no such ServiceAccount", pod.ServiceAccountName)
	}
	for _, sa := range m.serviceAccounts {
		if arn := sa.Annotations["eks.amazonaws.com/role-arn"]; !roleARN.MatchString(arn) {
			t.Errorf("ServiceAccount %s: eks.amazonaws.com/role-arn %q is not a role ARN", sa.Name, arn)
		}
	}

	// Security.
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.FSGroup == nil || *psc.FSGroup != 65532 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, runAsUser 65532 and fsGroup 65532", psc)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %d, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	csc := c.SecurityContext
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem and no privilege escalation", csc)
	}

	// Volumes: every mount has a volume, /cache is the claim.
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	var cacheClaim string
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			t.Errorf("volumeMount %s: no such volume", vm.Name)
			continue
		}
		if vm.MountPath == "/cache" {
			if v.PersistentVolumeClaim == nil {
				t.Errorf("/cache is mounted from %+v, want a PersistentVolumeClaim", v.VolumeSource)
				continue
			}
			cacheClaim = v.PersistentVolumeClaim.ClaimName
		}
	}
	claim := findClaim(m.claims, cacheClaim)
	if claim == nil {
		t.Fatalf("/cache: claim %q not among the manifests", cacheClaim)
	}

	// Ports, env and probes.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
			t.Errorf("port name %q: %s", p.Name, strings.Join(errs, "; "))
		}
		ports[p.Name] = p.ContainerPort
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e.Value
	}
	if !ecrURL.MatchString(env["ECR"]) {
		t.Errorf("ECR=%q: want https://<account>.dkr.ecr.<region>.amazonaws.com", env["ECR"])
	}
	if env["PORT"] != strconv.Itoa(int(ports["registry"])) {
		t.Errorf("PORT=%q, but the registry port is %d", env["PORT"], ports["registry"])
	}
	_, debugPort, err := net.SplitHostPort(env["REGISTRY_HTTP_DEBUG_ADDR"])
	if err != nil || debugPort != strconv.Itoa(int(ports["metrics"])) {
		t.Errorf("REGISTRY_HTTP_DEBUG_ADDR=%q, but the metrics port is %d", env["REGISTRY_HTTP_DEBUG_ADDR"], ports["metrics"])
	}
	if env["REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED"] != "true" {
		t.Error("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED is not true: no metrics")
	}
	for _, forbidden := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "REGISTRY_HTTP_ADDR"} {
		if _, ok := env[forbidden]; ok {
			t.Errorf("env sets %s (keys come from IRSA; PORT sets the address)", forbidden)
		}
	}
	maxSize, err := parseSize(env["CACHE_MAX_SIZE"])
	if err != nil {
		t.Errorf("CACHE_MAX_SIZE=%q: %v", env["CACHE_MAX_SIZE"], err)
	}
	storage := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if limit := storage.Value() * 9 / 10; maxSize <= 0 || maxSize > limit {
		t.Errorf("CACHE_MAX_SIZE=%s is not below 90%% of the volume (%s): leave headroom for transfers in flight", env["CACHE_MAX_SIZE"], storage.String())
	}

	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet probe", name)
			continue
		}
		if p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s probe path %q, want /healthz (an ECR outage must not take the cache out of service)", name, p.HTTPGet.Path)
		}
		if _, ok := ports[p.HTTPGet.Port.String()]; !ok && p.HTTPGet.Port.IntValue() != int(ports["registry"]) {
			t.Errorf("%s probe port %s is not a container port", name, p.HTTPGet.Port.String())
		}
	}

	// Resources.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	if c.Resources.Limits.Memory().Cmp(*c.Resources.Requests.Memory()) < 0 {
		t.Error("memory limit below its request")
	}

	// The Service reaches the pod and its two ports.
	for _, svc := range m.services {
		if !labels.Set(svc.Spec.Selector).AsSelector().Matches(labels.Set(d.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s selector %v does not select the pod %v", svc.Name, svc.Spec.Selector, d.Spec.Template.Labels)
		}
		var names []string
		for _, sp := range svc.Spec.Ports {
			names = append(names, sp.Name)
			if _, ok := ports[sp.TargetPort.String()]; !ok {
				t.Errorf("Service %s port %s targets %s, not a container port", svc.Name, sp.Name, sp.TargetPort.String())
			}
		}
		if !slices.Contains(names, "registry") || !slices.Contains(names, "metrics") {
			t.Errorf("Service %s ports %v, want registry and metrics", svc.Name, names)
		}
	}
}

func findClaim(claims []*corev1.PersistentVolumeClaim, name string) *corev1.PersistentVolumeClaim {
	for _, c := range claims {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// parseSize parses CACHE_MAX_SIZE as ecr-proxy does: digits and an
// optional k, m, g or t (powers of 1024).
func parseSize(s string) (int64, error) {
	q := strings.ToLower(strings.TrimSpace(s))
	shift := map[byte]int{'k': 10, 'm': 20, 'g': 30, 't': 40}
	n := 0
	if q != "" {
		if sh, ok := shift[q[len(q)-1]]; ok {
			n, q = sh, q[:len(q)-1]
		}
	}
	v, err := strconv.ParseInt(q, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("want a size such as 75g")
	}
	return v << n, nil
}
