// Package deploy tests the deployment files under deploy/ as a cluster and
// a monitoring stack would read them: every kustomize overlay rendered with
// kustomize's own library, every object decoded strictly into the Kubernetes
// API types, the kubelet's admission rules, port and selector consistency,
// the embedded configuration through portcullis -check-config, and the
// alerting rules through promtool. It is a module of its own so that the
// Kubernetes libraries stay out of Portcullis's dependencies.
package deploy

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kubeDir is deploy/kubernetes, relative to this package.
const kubeDir = "kubernetes"

// overlays are the shipped overlays, each rendered as shipped and without
// its optional components (the Redis-less install).
var overlays = []string{"sidecar", "forward-auth"}

// rendering is one rendered overlay, decoded.
type rendering struct {
	name            string
	namespace       string
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	netpols         []*networkingv1.NetworkPolicy
	namespaces      []*corev1.Namespace
	serviceMonitors []*serviceMonitor
	prometheusRules []*prometheusRule
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor
// these files use; decoding is strict, so an unknown field fails.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is monitoring.coreos.com/v1 PrometheusRule.
type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       ruleFile          `json:"spec"`
}

// ruleFile is a Prometheus rules file (and a PrometheusRule's spec).
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert,omitempty"`
			Record      string            `json:"record,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// variant is an overlay to render: as shipped, or with its components
// removed from its kustomization.
type variant struct {
	overlay       string
	noComponents  bool
	displayedName string
}

func variants() []variant {
	var vs []variant
	for _, o := range overlays {
		vs = append(vs, variant{o, false, o}, variant{o, true, o + " without components"})
	}
	return vs
}

// render builds the overlay with krusty from an in-memory copy of
// deploy/kubernetes (so a variant can edit its kustomization) and decodes
// every object strictly.
func render(t *testing.T, v variant) *rendering {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(kubeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile("/"+filepath.ToSlash(path), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := "/" + kubeDir + "/overlays/" + v.overlay
	if v.noComponents {
		k, err := mem.ReadFile(dir + "/kustomization.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(k, &doc); err != nil {
			t.Fatal(err)
		}
		if _, ok := doc["components"]; !ok {
			t.Fatalf("%s has no components to remove", dir)
		}
		delete(doc, "components")
		out, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := mem.WriteFile(dir+"/kustomization.yaml", out); err != nil {
			t.Fatal(err)
		}
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", v.displayedName, err)
	}
	r := &rendering{name: v.displayedName}
	for _, res := range resMap.Resources() {
		data, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		r.add(t, data)
	}
	return r
}

// strictDecoder decodes the built-in kinds into their Go types, failing on
// unknown or duplicate fields as `kubectl apply --validate=strict` does.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
}

func (r *rendering) add(t *testing.T, data []byte) {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		t.Fatal(err)
	}
	if head.APIVersion == "monitoring.coreos.com/v1" {
		var target any
		switch head.Kind {
		case "ServiceMonitor":
			sm := &serviceMonitor{}
			r.serviceMonitors, target = append(r.serviceMonitors, sm), sm
		case "PrometheusRule":
			pr := &prometheusRule{}
			r.prometheusRules, target = append(r.prometheusRules, pr), pr
		default:
			t.Fatalf("%s: unexpected kind %s", r.name, head.Kind)
		}
		if err := yaml.UnmarshalStrict(data, target); err != nil {
			t.Fatalf("%s: %s does not decode strictly: %v\n%s", r.name, head.Kind, err, data)
		}
		return
	}
	obj, gvk, err := strictDecoder(t).Decode(data, nil, nil)
	if err != nil {
		t.Fatalf("%s: %s/%s does not decode strictly: %v\n%s", r.name, head.APIVersion, head.Kind, err, data)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		r.deployments = append(r.deployments, o)
	case *corev1.Service:
		r.services = append(r.services, o)
	case *corev1.ConfigMap:
		r.configMaps = append(r.configMaps, o)
	case *corev1.Secret:
		r.secrets = append(r.secrets, o)
	case *policyv1.PodDisruptionBudget:
		r.pdbs = append(r.pdbs, o)
	case *autoscalingv2.HorizontalPodAutoscaler:
		r.hpas = append(r.hpas, o)
	case *networkingv1.NetworkPolicy:
		r.netpols = append(r.netpols, o)
	case *corev1.Namespace:
		r.namespaces = append(r.namespaces, o)
	default:
		t.Fatalf("%s: no check covers %s; add one", r.name, gvk)
	}
}

// renderAll renders every variant once per test binary.
func renderAll(t *testing.T) []*rendering {
	t.Helper()
	var out []*rendering
	for _, v := range variants() {
		out = append(out, render(t, v))
	}
	return out
}

func TestOverlaysRenderAndDecodeStrictly(t *testing.T) {
	t.Parallel()
	for _, r := range renderAll(t) {
		if len(r.deployments) == 0 || len(r.services) == 0 {
			t.Errorf("%s: rendered no Deployment or Service", r.name)
		}
		if len(r.secrets) > 0 {
			t.Errorf("%s: renders Secret %s: credentials are created by the user, and applying one would overwrite theirs", r.name, r.secrets[0].Name)
		}
	}
}

// TestStrictDecodingRefusesUnknownFields shows the decoder is strict: a
// misspelt field fails rather than being dropped.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	bad := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if _, _, err := strictDecoder(t).Decode(bad, nil, nil); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("decoding a misspelt field: %v, want an error naming it", err)
	}
	var sm serviceMonitor
	if err := yaml.UnmarshalStrict([]byte("spec: {endpoint: []}"), &sm); err == nil {
		t.Error("ServiceMonitor with a misspelt field decoded")
	}
}

// yamlDocs splits a multi-document YAML file.
func yamlDocs(data []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// mustRead reads a file relative to this package.
func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func objName(m metav1.ObjectMeta) string { return fmt.Sprintf("%s/%s", m.Namespace, m.Name) }
