package deploy

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// podsSelected returns the Deployments whose pod labels a selector matches.
func podsSelected(r *rendering, ns string, sel labels.Selector) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range r.deployments {
		if d.Namespace == ns && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func labelSelector(t *testing.T, s *metav1.LabelSelector) labels.Selector {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// TestSelectorsAndPorts: every Service, PodDisruptionBudget, NetworkPolicy
// and autoscaler points at pods that exist, Service target ports are
// container ports of those pods, and the Deployment's own selector matches
// its template.
func TestSelectorsAndPorts(t *testing.T) {
	t.Parallel()
	for _, r := range renderAll(t) {
		for _, d := range r.deployments {
			if !labelSelector(t, d.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: Deployment %s selector does not match its pod template", r.name, d.Name)
			}
		}
		for _, s := range r.services {
			pods := podsSelected(r, s.Namespace, labels.SelectorFromSet(s.Spec.Selector))
			if len(pods) != 1 {
				t.Errorf("%s: Service %s selects %d Deployments, want 1", r.name, objName(s.ObjectMeta), len(pods))
				continue
			}
			for _, sp := range s.Spec.Ports {
				found := false
				for i := range pods[0].Spec.Template.Spec.Containers {
					if _, ok := containerPort(&pods[0].Spec.Template.Spec.Containers[i], sp.TargetPort); ok {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: Service %s port %s targets %s, which no container of %s exposes", r.name, s.Name, sp.Name, sp.TargetPort.String(), pods[0].Name)
				}
			}
		}
		for _, p := range r.pdbs {
			if len(podsSelected(r, p.Namespace, labelSelector(t, p.Spec.Selector))) != 1 {
				t.Errorf("%s: PodDisruptionBudget %s selects no Deployment's pods", r.name, p.Name)
			}
		}
		for _, n := range r.netpols {
			pods := podsSelected(r, n.Namespace, labelSelector(t, &n.Spec.PodSelector))
			if len(pods) != 1 {
				t.Errorf("%s: NetworkPolicy %s selects %d Deployments, want 1", r.name, n.Name, len(pods))
				continue
			}
			for _, rule := range n.Spec.Ingress {
				for _, np := range rule.Ports {
					found := false
					for i := range pods[0].Spec.Template.Spec.Containers {
						if _, ok := containerPort(&pods[0].Spec.Template.Spec.Containers[i], *np.Port); ok {
							found = true
						}
					}
					if !found {
						t.Errorf("%s: NetworkPolicy %s admits port %s, which %s does not expose", r.name, n.Name, np.Port.String(), pods[0].Name)
					}
				}
				for _, peer := range rule.From {
					if peer.PodSelector != nil && len(podsSelected(r, n.Namespace, labelSelector(t, peer.PodSelector))) == 0 {
						t.Errorf("%s: NetworkPolicy %s admits pods that nothing here runs", r.name, n.Name)
					}
				}
			}
		}
		for _, h := range r.hpas {
			ref := h.Spec.ScaleTargetRef
			ok := false
			for _, d := range r.deployments {
				ok = ok || (ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && ref.Name == d.Name && d.Namespace == h.Namespace)
			}
			if !ok {
				t.Errorf("%s: HorizontalPodAutoscaler %s scales %s/%s %s, which is not rendered", r.name, h.Name, ref.APIVersion, ref.Kind, ref.Name)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
				t.Errorf("%s: HorizontalPodAutoscaler %s replicas %v..%d", r.name, h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
			}
		}
		// Portcullis itself has a PDB, an autoscaler and a NetworkPolicy.
		for _, d := range r.deployments {
			if portcullisContainer(d) == nil {
				continue
			}
			pod := labels.Set(d.Spec.Template.Labels)
			has := map[string]bool{}
			for _, p := range r.pdbs {
				has["PodDisruptionBudget"] = has["PodDisruptionBudget"] || labelSelector(t, p.Spec.Selector).Matches(pod)
			}
			for _, n := range r.netpols {
				has["NetworkPolicy"] = has["NetworkPolicy"] || labelSelector(t, &n.Spec.PodSelector).Matches(pod)
			}
			for _, h := range r.hpas {
				has["HorizontalPodAutoscaler"] = has["HorizontalPodAutoscaler"] || h.Spec.ScaleTargetRef.Name == d.Name
			}
			for _, kind := range []string{"PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler"} {
				if !has[kind] {
					t.Errorf("%s: no %s covers %s", r.name, kind, d.Name)
				}
			}
		}
	}
}

// TestMetricsAreScraped: a Service port named for metrics reaches the admin
// port, a ServiceMonitor selects that Service and port, and the
// PrometheusRule carries labels an operator can select.
func TestMetricsAreScraped(t *testing.T) {
	t.Parallel()
	for _, r := range renderAll(t) {
		if len(r.serviceMonitors) != 1 || len(r.prometheusRules) != 1 {
			t.Errorf("%s: %d ServiceMonitors and %d PrometheusRules, want 1 each", r.name, len(r.serviceMonitors), len(r.prometheusRules))
			continue
		}
		sm := r.serviceMonitors[0]
		if len(sm.Metadata.Labels) == 0 || len(r.prometheusRules[0].Metadata.Labels) == 0 {
			t.Errorf("%s: ServiceMonitor or PrometheusRule without labels: no operator selector can pick them", r.name)
		}
		matched := 0
		for _, s := range r.services {
			if s.Namespace != sm.Metadata.Namespace || !labelSelector(t, &sm.Spec.Selector).Matches(labels.Set(s.Labels)) {
				continue
			}
			pods := podsSelected(r, s.Namespace, labels.SelectorFromSet(s.Spec.Selector))
			for _, ep := range sm.Spec.Endpoints {
				for _, sp := range s.Spec.Ports {
					if sp.Name != ep.Port {
						continue
					}
					matched++
					c := portcullisContainer(pods[0])
					port, ok := containerPort(c, sp.TargetPort)
					cfg := embeddedConfig(t, r, pods[0], c)
					if !ok || port != listenPort(t, cfg.AdminListen) || ep.Path != "/metrics" {
						t.Errorf("%s: ServiceMonitor scrapes %s on Service port %s → %d, want /metrics on the admin port", r.name, ep.Path, sp.Name, port)
					}
				}
			}
		}
		if matched != 1 {
			t.Errorf("%s: the ServiceMonitor reaches %d Service ports, want exactly the metrics port", r.name, matched)
		}
	}
}

// ingressURL matches the Service URLs in the ingress recipes.
var ingressURL = regexp.MustCompile(`http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)(/[^\s"']*)`)

// TestIngressRecipesReachTheForwardAuthService: the ingress-nginx and
// Traefik recipes call a Service, namespace and port that the forward-auth
// overlay renders, on its public listener, at /auth/verify.
func TestIngressRecipesReachTheForwardAuthService(t *testing.T) {
	t.Parallel()
	r := render(t, variant{"forward-auth", false, "forward-auth"})
	for _, recipe := range []string{"ingress/ingress-nginx.yaml", "ingress/traefik.yaml"} {
		m := ingressURL.FindAllStringSubmatch(string(mustRead(t, recipe)), -1)
		if len(m) == 0 {
			t.Errorf("%s: no Service URL found", recipe)
		}
		for _, u := range m {
			name, ns, path := u[1], u[2], u[4]
			port, _ := strconv.Atoi(u[3])
			ok := false
			for _, s := range r.services {
				if s.Name != name || s.Namespace != ns {
					continue
				}
				for _, sp := range s.Spec.Ports {
					if sp.Port != int32(port) {
						continue
					}
					d := podsSelected(r, s.Namespace, labels.SelectorFromSet(s.Spec.Selector))[0]
					c := portcullisContainer(d)
					cp, _ := containerPort(c, sp.TargetPort)
					ok = cp == listenPort(t, embeddedConfig(t, r, d, c).Listen)
				}
			}
			if !ok || !strings.HasPrefix(path, "/auth/verify") {
				t.Errorf("%s calls %s: the forward-auth overlay has no Service %s/%s with port %d on Portcullis's listen port, or the path is not /auth/verify", recipe, u[0], ns, name, port)
			}
		}
	}
}
