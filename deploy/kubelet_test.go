package deploy

import (
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
