package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// listeners is what these tests need from an embedded configuration.
type listeners struct {
	Listen      string
	AdminListen string
	File        string // the config file's path in the container
	Data        string // its contents
}

// configFile finds the file given to -config and its contents in the
// ConfigMap mounted there.
func configFile(t *testing.T, r *rendering, d *appsv1.Deployment, c *corev1.Container) (string, string) {
	t.Helper()
	file := ""
	for i, a := range c.Args {
		if a == "-config" && i+1 < len(c.Args) {
			file = c.Args[i+1]
		}
	}
	if file == "" {
		t.Fatalf("%s: %s/%s has no -config argument", r.name, d.Name, c.Name)
	}
	for _, m := range c.VolumeMounts {
		if path.Dir(file) != m.MountPath {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			for _, cm := range r.configMaps {
				if cm.Name == v.ConfigMap.Name && cm.Namespace == d.Namespace {
					if data, ok := cm.Data[path.Base(file)]; ok {
						return file, data
					}
				}
			}
		}
	}
	t.Fatalf("%s: -config %s is not a file of a ConfigMap mounted in %s", r.name, file, d.Name)
	return "", ""
}

// embeddedConfig reads the listen addresses of the configuration the
// container runs with, defaults and BIND_ADDR/ADMIN_BIND_ADDR included.
func embeddedConfig(t *testing.T, r *rendering, d *appsv1.Deployment, c *corev1.Container) listeners {
	t.Helper()
	file, data := configFile(t, r, d, c)
	var doc struct {
		Listen      *string `json:"listen"`
		AdminListen *string `json:"admin_listen"`
	}
	if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
		t.Fatalf("%s: %s: %v", r.name, file, err)
	}
	l := listeners{Listen: ":8080", AdminListen: ":9090", File: file, Data: data}
	if doc.Listen != nil {
		l.Listen = *doc.Listen
	}
	if doc.AdminListen != nil {
		l.AdminListen = *doc.AdminListen
	}
	for _, e := range c.Env {
		switch e.Name {
		case "BIND_ADDR":
			l.Listen = e.Value
		case "ADMIN_BIND_ADDR":
			l.AdminListen = e.Value
		}
	}
	if strings.Contains(l.Listen+l.AdminListen, "${") || l.AdminListen == "" {
		t.Fatalf("%s: listeners %q, %q: the manifests need literal addresses and a separate admin listener", r.name, l.Listen, l.AdminListen)
	}
	return l
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// portcullisBinary builds the parent module once.
func portcullisBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portcullis-deploy")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "portcullis")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building portcullis: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// expandEnv resolves a container's env the way the kubelet does: literal
// values, with $(NAME) replaced by an earlier variable and $$ by $.
func expandEnv(env []corev1.EnvVar, from map[string]string) []string {
	vals := map[string]string{}
	for k, v := range from {
		vals[k] = v
	}
	var out []string
	for _, e := range env {
		var b strings.Builder
		v := e.Value
		for i := 0; i < len(v); i++ {
			if v[i] == '$' && i+1 < len(v) && v[i+1] == '$' {
				b.WriteByte('$')
				i++
				continue
			}
			if v[i] == '$' && i+1 < len(v) && v[i+1] == '(' {
				if end := strings.IndexByte(v[i:], ')'); end > 0 {
					name := v[i+2 : i+end]
					if val, ok := vals[name]; ok {
						b.WriteString(val)
						i += end
						continue
					}
				}
			}
			b.WriteByte(v[i])
		}
		vals[e.Name] = b.String()
		out = append(out, e.Name+"="+b.String())
	}
	for k, v := range from {
		out = append(out, k+"="+v)
	}
	return out
}

// TestEmbeddedConfigPassesCheckConfig lays out every rendered Portcullis
// container's files as the kubelet would (the ConfigMap at its mount path,
// a freshly generated key where the Secret is mounted, the Secret's mode and
// the pod's fsGroup) and runs portcullis -check-config on it, with the
// container's environment and, optionally, the client Secret.
func TestEmbeddedConfigPassesCheckConfig(t *testing.T) {
	t.Parallel()
	bin := portcullisBinary(t)
	for _, r := range renderAll(t) {
		for _, d := range r.deployments {
			c := portcullisContainer(d)
			if c == nil {
				continue
			}
			root := t.TempDir()
			l := embeddedConfig(t, r, d, c)
			if !strings.Contains(l.Data, "environment: production") {
				t.Errorf("%s: the embedded config is not environment: production", r.name)
			}
			cfgPath := filepath.Join(root, filepath.FromSlash(l.File))
			if err := os.MkdirAll(filepath.Dir(cfgPath), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfgPath, []byte(l.Data), 0o644); err != nil {
				t.Fatal(err)
			}
			layoutSecrets(t, root, d, c)
			secret := base64.StdEncoding.EncodeToString(randomBytes(t, 36))
			for _, client := range []map[string]string{
				nil, // the client Secret is optional
				{"CLIENT_ID": "billing", "CLIENT_SECRET": secret, "CLIENT_SCOPES": "orders:read orders:write", "BCRYPT_COST": "4"},
			} {
				cmd := exec.Command(bin, "-check-config", "-config", cfgPath)
				cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, expandEnv(c.Env, client)...)
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "configuration is valid") {
					t.Errorf("%s: portcullis -check-config on the embedded config (env %v): %v\n%s", r.name, cmd.Env, err, out)
				}
			}
		}
	}
}

// layoutSecrets writes a generated key at each Secret volume's mount path
// (every file the config names under it), with the volume's mode.
func layoutSecrets(t *testing.T, root string, d *appsv1.Deployment, c *corev1.Container) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			dir := filepath.Join(root, filepath.FromSlash(m.MountPath))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			mode := os.FileMode(0o644) // the API's default
			if v.Secret.DefaultMode != nil {
				mode = os.FileMode(*v.Secret.DefaultMode)
			}
			file := filepath.Join(dir, "es256.pem")
			if err := os.WriteFile(file, ecKey(t), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, mode); err != nil {
				t.Fatal(err)
			}
			// The kubelet gives the files the pod's fsGroup; as the test
			// process is the "process" here, use its own group, which is
			// what fsGroup achieves for the container.
			if err := os.Chown(file, os.Geteuid(), os.Getegid()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func ecKey(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
