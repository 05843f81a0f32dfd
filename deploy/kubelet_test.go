package deploy

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ourImage is Portcullis's image; its USER comes from ../Dockerfile.
const ourImage = "ghcr.io/portcullis/portcullis"

// dockerfileUser returns the USER of the final stage of ../Dockerfile.
func dockerfileUser(t *testing.T) string {
	t.Helper()
	user := ""
	for _, line := range strings.Split(string(mustRead(t, "../Dockerfile")), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "USER" {
			user = f[1]
		}
	}
	return user
}

// TestImageUserIsNumeric: the kubelet can only verify runAsNonRoot against
// a numeric image user ("image has non-numeric user … cannot verify user is
// non-root" otherwise).
func TestImageUserIsNumeric(t *testing.T) {
	t.Parallel()
	user := dockerfileUser(t)
	uid, gid, _ := strings.Cut(user, ":")
	for _, v := range []string{uid, gid} {
		if n, err := strconv.Atoi(v); err != nil || n == 0 {
			t.Errorf("Dockerfile USER %q: want a numeric, non-root uid:gid", user)
		}
	}
}

// effectiveUser is the uid the kubelet runs a container as: the
// container's runAsUser, else the pod's, else the image's USER (known for
// our image only). ok is false when nothing numeric is known.
func effectiveUser(t *testing.T, pod *corev1.PodSpec, c *corev1.Container) (int64, bool) {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return *c.SecurityContext.RunAsUser, true
	}
	if pod.SecurityContext != nil && pod.SecurityContext.RunAsUser != nil {
		return *pod.SecurityContext.RunAsUser, true
	}
	if strings.HasPrefix(c.Image, ourImage) {
		uid, _, _ := strings.Cut(dockerfileUser(t), ":")
		if n, err := strconv.ParseInt(uid, 10, 64); err == nil {
			return n, true
		}
	}
	return 0, false
}

// TestKubeletWouldStartEveryContainer applies the kubelet's non-root check
// and the hardening every container here must have.
func TestKubeletWouldStartEveryContainer(t *testing.T) {
	t.Parallel()
	for _, r := range renderAll(t) {
		for _, d := range r.deployments {
			pod := &d.Spec.Template.Spec
			psc := pod.SecurityContext
			if psc == nil {
				t.Errorf("%s: Deployment %s has no pod securityContext", r.name, d.Name)
				continue
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Errorf("%s: %s mounts a service-account token it does not use", r.name, d.Name)
			}
			for i := range pod.Containers {
				c := &pod.Containers[i]
				where := r.name + ": " + d.Name + "/" + c.Name
				sc := c.SecurityContext
				if sc == nil {
					t.Errorf("%s: no securityContext", where)
					continue
				}
				nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
				if !nonRoot {
					t.Errorf("%s: runAsNonRoot is not set", where)
				}
				if uid, ok := effectiveUser(t, pod, c); !ok {
					t.Errorf("%s: runAsNonRoot without a numeric runAsUser: the kubelet refuses to start it", where)
				} else if uid == 0 {
					t.Errorf("%s: runAsUser 0 with runAsNonRoot: the kubelet refuses to start it", where)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s: readOnlyRootFilesystem is not true", where)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s: allowPrivilegeEscalation is not false", where)
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s: privileged", where)
				}
				if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s: capabilities %+v, want drop [ALL] and nothing added", where, sc.Capabilities)
				}
				seccomp := sc.SeccompProfile
				if seccomp == nil {
					seccomp = psc.SeccompProfile
				}
				if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: seccomp profile is not RuntimeDefault", where)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: resources %+v: want cpu and memory requests and a memory limit", where, c.Resources)
				}
				for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
					if p != nil {
						checkProbePort(t, where, c, p)
					}
				}
			}
			checkSecretVolumes(t, r.name, d)
		}
	}
}

// checkSecretVolumes: a Secret mounted into a non-root pod is readable only
// through fsGroup; its mode gives nothing to others (production refuses a
// private key others can read).
func checkSecretVolumes(t *testing.T, name string, d *appsv1.Deployment) {
	t.Helper()
	pod := &d.Spec.Template.Spec
	for _, v := range pod.Volumes {
		if v.Secret == nil {
			continue
		}
		if pod.SecurityContext.FSGroup == nil {
			t.Errorf("%s: %s mounts Secret %s without fsGroup: a non-root process cannot read root:root 0400 files", name, d.Name, v.Secret.SecretName)
		}
		if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 || *v.Secret.DefaultMode&0o040 == 0 {
			t.Errorf("%s: Secret volume %s defaultMode %v: want group-readable, nothing for others (0440)", name, v.Name, v.Secret.DefaultMode)
		}
	}
}

// containerPort resolves a probe's or Service's port (a name or a number)
// to a container port of c; ok is false when c has no such port.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func checkProbePort(t *testing.T, where string, c *corev1.Container, p *corev1.Probe) {
	t.Helper()
	var port intstr.IntOrString
	switch {
	case p.HTTPGet != nil:
		port = p.HTTPGet.Port
	case p.TCPSocket != nil:
		port = p.TCPSocket.Port
	default:
		return
	}
	if _, ok := containerPort(c, port); !ok {
		t.Errorf("%s: probe port %s is not a port of the container", where, port.String())
	}
}

// portcullisContainer finds the Portcullis container of a Deployment.
func portcullisContainer(d *appsv1.Deployment) *corev1.Container {
	for i := range d.Spec.Template.Spec.Containers {
		if strings.HasPrefix(d.Spec.Template.Spec.Containers[i].Image, ourImage) {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	return nil
}

// TestPortcullisProbesAndPorts: the probes are the three health paths on
// the admin listener, and the container ports are the listeners of the
// embedded configuration.
func TestPortcullisProbesAndPorts(t *testing.T) {
	t.Parallel()
	for _, r := range renderAll(t) {
		n := 0
		for _, d := range r.deployments {
			c := portcullisContainer(d)
			if c == nil {
				continue
			}
			n++
			where := r.name + ": " + d.Name
			cfg := embeddedConfig(t, r, d, c)
			listen, admin := listenPort(t, cfg.Listen), listenPort(t, cfg.AdminListen)
			for _, pr := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{
				{"liveness", c.LivenessProbe, "/health/live"},
				{"readiness", c.ReadinessProbe, "/health/ready"},
				{"startup", c.StartupProbe, "/health/startup"},
			} {
				if pr.probe == nil || pr.probe.HTTPGet == nil {
					t.Errorf("%s: no HTTP %s probe", where, pr.name)
					continue
				}
				port, _ := containerPort(c, pr.probe.HTTPGet.Port)
				if pr.probe.HTTPGet.Path != pr.path || port != admin {
					t.Errorf("%s: %s probe GET %s on port %d, want %s on the admin port %d", where, pr.name, pr.probe.HTTPGet.Path, port, pr.path, admin)
				}
			}
			ports := map[int32]bool{}
			for _, cp := range c.Ports {
				ports[cp.ContainerPort] = true
			}
			if !ports[listen] || !ports[admin] {
				t.Errorf("%s: container ports %v, want listen %d and admin_listen %d", where, c.Ports, listen, admin)
			}
		}
		if n != 1 {
			t.Errorf("%s: %d Deployments run Portcullis, want 1", r.name, n)
		}
	}
}

func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	p, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("listen address %q has no port", addr)
	}
	return int32(p)
}

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
