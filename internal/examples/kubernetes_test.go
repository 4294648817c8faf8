package examples

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const manifests = root + "/daemon/kubernetes"

// kustomization is the part of kustomize's Kustomization these manifests
// use, decoded strictly: a misspelt field fails (kustomize's own types are
// not in this module's graph).
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name   string `json:"name"`
		NewTag string `json:"newTag"`
		Digest string `json:"digest"`
	} `json:"images"`
}

// decoded is every object of the manifests, decoded strictly into its
// Kubernetes API type: an unknown or misspelt field, or a value of the wrong
// type, fails the test with the file and kind.
type decoded struct {
	kustomization  kustomization
	namespace      corev1.Namespace
	serviceAccount corev1.ServiceAccount
	deployment     appsv1.Deployment
	pdb            policyv1.PodDisruptionBudget
	service        corev1.Service
	serviceMonitor monitoringv1.ServiceMonitor
}

func decodeManifests(t *testing.T) decoded {
	t.Helper()
	var d decoded
	b, err := os.ReadFile(filepath.Join(manifests, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &d.kustomization); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(manifests, "*.yaml"))
	var listed []string
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			listed = append(listed, filepath.Base(f))
		}
	}
	if got := slices.Sorted(slices.Values(d.kustomization.Resources)); !slices.Equal(got, listed) {
		t.Errorf("kustomization.yaml lists %q; the folder has %q", got, listed)
	}
	targets := map[string]any{
		"v1/Namespace":                            &d.namespace,
		"v1/ServiceAccount":                       &d.serviceAccount,
		"apps/v1/Deployment":                      &d.deployment,
		"policy/v1/PodDisruptionBudget":           &d.pdb,
		"v1/Service":                              &d.service,
		"monitoring.coreos.com/v1/ServiceMonitor": &d.serviceMonitor,
	}
	seen := map[string]bool{}
	for _, name := range d.kustomization.Resources {
		b, err := os.ReadFile(filepath.Join(manifests, name))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var u unstructured.Unstructured
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatalf("%s, document %d: %v", name, i+1, err)
			}
			key := u.GetAPIVersion() + "/" + u.GetKind()
			target, ok := targets[key]
			if !ok {
				t.Errorf("%s: unexpected %s", name, key)
				continue
			}
			if seen[key] {
				t.Errorf("%s: a second %s", name, key)
			}
			seen[key] = true
			if err := yaml.UnmarshalStrict(doc, target); err != nil {
				t.Errorf("%s: %s does not decode strictly: %v", name, key, err)
			}
		}
	}
	for key := range targets {
		if !seen[key] {
			t.Errorf("no %s among the manifests", key)
		}
	}
	return d
}

// TestManifestsDecodeAndAgree: the manifests are valid objects of their
// API types, and they agree with each other and with jitd: the selectors
// select the pods, the probes ask for the paths jitd serves, workload
// identity is wired, the pods run non-root on a read-only file system with
// limits, and the image is pinned by digest.
func TestManifestsDecodeAndAgree(t *testing.T) {
	d := decodeManifests(t)
	dep := d.deployment
	pod := dep.Spec.Template
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("deployment: replicas %v, want 2", dep.Spec.Replicas)
	}
	sel := dep.Spec.Selector.MatchLabels
	matches := func(labels, selector map[string]string) bool {
		for k, v := range selector {
			if labels[k] != v {
				return false
			}
		}
		return len(selector) > 0
	}
	if !matches(pod.Labels, sel) {
		t.Errorf("deployment: selector %v does not select its pods %v", sel, pod.Labels)
	}
	if !matches(pod.Labels, d.pdb.Spec.Selector.MatchLabels) {
		t.Errorf("pdb: selector %v does not select the pods", d.pdb.Spec.Selector.MatchLabels)
	}
	if d.pdb.Spec.MinAvailable == nil || d.pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("pdb: minAvailable %v, want 1", d.pdb.Spec.MinAvailable)
	}
	if !matches(pod.Labels, d.service.Spec.Selector) {
		t.Errorf("service: selector %v does not select the pods", d.service.Spec.Selector)
	}
	if !matches(d.service.Labels, d.serviceMonitor.Spec.Selector.MatchLabels) {
		t.Errorf("servicemonitor: selector %v does not select the service", d.serviceMonitor.Spec.Selector.MatchLabels)
	}

	// Workload identity.
	if pod.Labels["azure.workload.identity/use"] != "true" {
		t.Error(`pods lack the label azure.workload.identity/use: "true"`)
	}
	if pod.Spec.ServiceAccountName != d.serviceAccount.Name || d.serviceAccount.Annotations["azure.workload.identity/client-id"] == "" {
		t.Errorf("pods run as %q; the service account %q must carry azure.workload.identity/client-id",
			pod.Spec.ServiceAccountName, d.serviceAccount.Name)
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["ARM_USE_OIDC"] != "true" || env["ARM_OIDC_TOKEN_FILE_PATH"] != "/var/run/secrets/azure/tokens/azure-identity-token" || env["ARM_USE_CLI"] != "false" {
		t.Errorf("container env does not read the projected federated token: %v", env)
	}

	// Probes on the paths jitd serves (internal/daemon's handler), on the
	// port it listens on.
	var listen string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--listen="); ok {
			listen = v
		}
	}
	if len(c.Ports) != 1 || ":"+strconv.Itoa(int(c.Ports[0].ContainerPort)) != listen || c.Ports[0].Name != "metrics" {
		t.Errorf("container port %v does not match --listen=%s", c.Ports, listen)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz", "startup": "/healthz"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %+v, want GET %s on port metrics", name, p, want)
		}
	}
	served, err := os.ReadFile("../daemon/health.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if !bytes.Contains(served, []byte(`"GET `+path+`"`)) {
			t.Errorf("internal/daemon/health.go does not serve %s", path)
		}
	}
	if ep := d.serviceMonitor.Spec.Endpoints; len(ep) != 1 || ep[0].Port != d.service.Spec.Ports[0].Name || ep[0].Path != "/metrics" {
		t.Errorf("servicemonitor endpoints %+v, want port %q path /metrics", ep, d.service.Spec.Ports[0].Name)
	}

	// Resources and security.
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("container resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("pods must run as a non-root user")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v: want a read-only root, no privilege escalation, all capabilities dropped", sc)
	}

	// The image: by digest, through kustomize's images.
	if len(d.kustomization.Images) != 1 || d.kustomization.Images[0].Name != strings.Split(c.Image, ":")[0] ||
		!strings.HasPrefix(d.kustomization.Images[0].Digest, "sha256:") || len(d.kustomization.Images[0].Digest) != len("sha256:")+64 {
		t.Errorf("kustomization images %+v: want the container's image pinned by a sha256 digest", d.kustomization.Images)
	}
}
