package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these files use,
// decoded strictly so a misspelt field fails.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels,omitempty"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
	Patches []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// manifests decodes every YAML file under deploy/kubernetes strictly into its
// upstream type, following each kustomization's resources.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pdbs        map[string]*policyv1.PodDisruptionBudget
	configMaps  map[string]*corev1.ConfigMap
	kusts       map[string]*kustomization
	rules       []*prometheusRule
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, configMaps: map[string]*corev1.ConfigMap{}, kusts: map[string]*kustomization{}}
	err := filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if filepath.Base(path) == "kustomization.yaml" {
			var k kustomization
			if err := yaml.UnmarshalStrict(b, &k); err != nil {
				t.Errorf("%s: %v", path, err)
				return nil
			}
			for _, r := range append(slicesOf(k.Resources), patchPaths(k)...) {
				if _, err := os.Stat(filepath.Join(filepath.Dir(path), r)); err != nil {
					t.Errorf("%s: resource %s: %v", path, r, err)
				}
			}
			m.kusts[path] = &k
			return nil
		}
		var tm typeMeta
		if err := yaml.Unmarshal(b, &tm); err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		strict := func(into any) {
			if err := yaml.UnmarshalStrict(b, into); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		switch tm.Kind {
		case "Deployment":
			var d appsv1.Deployment
			strict(&d)
			if !strings.Contains(path, "overlays") {
				m.deployments[d.Name] = &d
			}
		case "Service":
			var s corev1.Service
			strict(&s)
			m.services[s.Name] = &s
		case "PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			strict(&p)
			m.pdbs[p.Name] = &p
		case "ConfigMap":
			var c corev1.ConfigMap
			strict(&c)
			m.configMaps[c.Name] = &c
		case "PrometheusRule":
			var r prometheusRule
			strict(&r)
			m.rules = append(m.rules, &r)
		default:
			t.Errorf("%s: unexpected kind %q", path, tm.Kind)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// prometheusRule is the Prometheus Operator's PrometheusRule, as far as the
// tests read it (the operator's Go types would pull in its whole module).
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec ruleFile `json:"spec"`
}

// ruleFile is a Prometheus rules file; the groups stay generic.
type ruleFile struct {
	Groups []map[string]any `json:"groups"`
}

// The PrometheusRule carries exactly the groups of the plain rules file,
// which promtool checks and unit-tests (e2e/run).
func TestPrometheusRuleMatchesTheRulesFile(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	var file ruleFile
	if err := yaml.UnmarshalStrict(must(os.ReadFile("prometheus/rules.yml")), &file); err != nil {
		t.Fatal(err)
	}
	if len(m.rules) != 1 {
		t.Fatalf("%d PrometheusRules under kubernetes/, want 1", len(m.rules))
	}
	if len(file.Groups) == 0 || !reflect.DeepEqual(m.rules[0].Spec.Groups, file.Groups) {
		t.Fatalf("the PrometheusRule's groups differ from prometheus/rules.yml")
	}
}

func slicesOf(s []string) []string { return append([]string{}, s...) }

func patchPaths(k kustomization) []string {
	var out []string
	for _, p := range k.Patches {
		out = append(out, p.Path)
	}
	return out
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	for _, name := range []string{"spectora-gateway", "spectora-consumers", "jaeger"} {
		if m.deployments[name] == nil {
			t.Errorf("no Deployment %s", name)
		}
	}
	for _, name := range []string{"spectora-gateway", "spectora-consumers", "jaeger-collector"} {
		if m.services[name] == nil {
			t.Errorf("no Service %s", name)
		}
	}
	if m.pdbs["spectora-gateway"] == nil || m.pdbs["spectora-consumers"] == nil {
		t.Error("missing PodDisruptionBudgets")
	}
	if m.configMaps["spectora-stream"] == nil {
		t.Error("missing ConfigMap spectora-stream")
	}
	// A misspelt field must fail the strict decode the test relies on.
	bad := bytes.Replace(must(os.ReadFile("kubernetes/base/gateway-deployment.yaml")), []byte("readinessProbe"), []byte("readynessProbe"), 1)
	if err := yaml.UnmarshalStrict(bad, &appsv1.Deployment{}); err == nil {
		t.Fatal("strict decoding accepted a misspelt field")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", d.Name, len(d.Spec.Template.Spec.Containers))
	}
	return d.Spec.Template.Spec.Containers[0]
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func TestDeploymentsMatchTheBinary(t *testing.T) {
	m := loadManifests(t)
	cm := m.configMaps["spectora-stream"]
	for name, command := range map[string]string{"spectora-gateway": "gateway", "spectora-consumers": "consumers"} {
		d := m.deployments[name]
		c := container(t, d)
		if !slices.Equal(c.Args, []string{command}) {
			t.Errorf("%s: args %v, want [%s]", name, c.Args, command)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("%s: want at least 2 replicas", name)
		}
		for _, e := range c.Env {
			if !knownEnv(t, command, e.Name) {
				t.Errorf("%s: env %s is not a setting of `spectora-stream %s`", name, e.Name, command)
			}
		}
		if cm != nil {
			for k := range cm.Data {
				if !knownEnv(t, command, k) && !knownEnv(t, otherCommand(command), k) {
					t.Errorf("ConfigMap key %s is read by neither command", k)
				}
			}
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: readiness probe must GET /readyz", name)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: liveness probe must GET /healthz", name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: set CPU requests and a memory limit", name)
		}
		sc := d.Spec.Template.Spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: must run as non-root", name)
		}
		if pdb := m.pdbs[name]; pdb == nil || pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != d.Spec.Selector.MatchLabels["app.kubernetes.io/name"] {
			t.Errorf("%s: PodDisruptionBudget does not select the Deployment", name)
		}
	}

	// The gateway's grace period covers the drain it is configured for.
	gw := m.deployments["spectora-gateway"]
	c := container(t, gw)
	delay, _ := time.ParseDuration(envValue(c, "SHUTDOWN_DELAY"))
	timeout, _ := time.ParseDuration(envValue(c, "SHUTDOWN_TIMEOUT"))
	grace := time.Duration(*gw.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if delay == 0 || timeout == 0 || grace <= delay+timeout+5*time.Second {
		t.Errorf("gateway terminationGracePeriodSeconds %s must exceed SHUTDOWN_DELAY %s + SHUTDOWN_TIMEOUT %s + the NATS drain", grace, delay, timeout)
	}
	cons := m.deployments["spectora-consumers"]
	drain, _ := time.ParseDuration(envValue(container(t, cons), "CONSUMER_DRAIN_TIMEOUT"))
	if g := time.Duration(*cons.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second; drain == 0 || g <= drain {
		t.Errorf("consumers terminationGracePeriodSeconds %s must exceed CONSUMER_DRAIN_TIMEOUT %s", g, drain)
	}
	// Services target the named ports the containers expose.
	for name, port := range map[string]string{"spectora-gateway": "http", "spectora-consumers": "metrics"} {
		svc := m.services[name]
		if svc == nil || svc.Spec.Ports[0].TargetPort.StrVal != port {
			t.Errorf("Service %s must target port %q", name, port)
		}
	}
}

// The console runs alone, as the operator user, on its own port, with its
// tokens from the Secret, reading every gateway through a headless Service.
func TestConsoleDeployment(t *testing.T) {
	m := loadManifests(t)
	d := m.deployments["spectora-console"]
	if d == nil {
		t.Fatal("no spectora-console Deployment")
	}
	c := container(t, d)
	if !slices.Equal(c.Args, []string{"console"}) {
		t.Errorf("console: args %v, want [console]", c.Args)
	}
	for _, e := range c.Env {
		if !knownEnv(t, "console", e.Name) {
			t.Errorf("console: env %s is not a setting of `spectora-stream console`", e.Name)
		}
	}
	if envValue(c, "NATS_USER") != "operator" {
		t.Error("console: NATS_USER must be operator: it redrives and replays")
	}
	for _, e := range c.Env {
		if e.Name == "ADMIN_TOKENS" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Error("console: ADMIN_TOKENS must come from the Secret")
		}
	}
	port := envValue(c, "ADMIN_ADDR")
	if len(c.Ports) != 1 || ":"+fmt.Sprint(c.Ports[0].ContainerPort) != port {
		t.Errorf("console: container port %v does not match ADMIN_ADDR %q", c.Ports, port)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.StrVal != c.Ports[0].Name {
			t.Error("console: probes must GET /healthz on its port")
		}
	}
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("console: must run as non-root")
	}
	if svc := m.services["spectora-console"]; svc == nil || svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort {
		t.Error("console: want a ClusterIP Service (operators come through port-forward or an Ingress with TLS)")
	}
	metrics := m.services["spectora-gateway-metrics"]
	if metrics == nil || metrics.Spec.ClusterIP != corev1.ClusterIPNone || !strings.Contains(envValue(c, "ADMIN_METRICS_URLS"), "spectora-gateway-metrics:9090") {
		t.Error("console: ADMIN_METRICS_URLS must name the headless spectora-gateway-metrics Service, so every gateway pod is read")
	}
	if !strings.Contains(m.configMaps["spectora-stream"].Data["CONSUMER_GROUPS"], "indexer") {
		t.Error("CONSUMER_GROUPS lacks indexer: the console couldn't find events by record ID")
	}
}

func otherCommand(c string) string {
	if c == "gateway" {
		return "consumers"
	}
	return "gateway"
}
