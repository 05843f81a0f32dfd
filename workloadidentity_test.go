package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/config"
)

const workloadIdentityDir = "deploy/workload-identity"

// manifests decodes every document of a multi-document YAML file.
func manifests(t *testing.T, name string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(workloadIdentityDir, name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		docs = append(docs, d)
	}
}

// dig follows map keys and list indexes through decoded YAML.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func find(docs []map[string]any, kind string) map[string]any {
	for _, d := range docs {
		if d["kind"] == kind {
			return d
		}
	}
	return nil
}

// TestWorkloadIdentityRecipe keeps deploy/workload-identity true to the
// code: its Portcullis config passes -check-config (with the key and CA
// paths pointed at real files), the client pod's projected token has the
// audience and subject the config expects, and no secret appears anywhere.
func TestWorkloadIdentityRecipe(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(workloadIdentityDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	kust := manifests(t, "kustomization.yaml")[0]
	for _, f := range files {
		base := filepath.Base(f)
		data, _ := os.ReadFile(f)
		for _, bad := range []string{"secret_hash", "CLIENT_SECRET", "client_secret"} {
			if strings.Contains(string(data), bad) {
				t.Errorf("%s mentions %s; the recipe must need no client secret", base, bad)
			}
		}
		if res, _ := kust["resources"].([]any); base != "kustomization.yaml" && !slices.Contains(res, any(base)) {
			t.Errorf("kustomization.yaml does not list %s", base)
		}
	}

	pc := manifests(t, "portcullis.yaml")
	cfgText, _ := dig(find(pc, "ConfigMap"), "data", "config.yaml").(string)
	dir := t.TempDir()
	keyFile, caFile := filepath.Join(dir, "es256.pem"), filepath.Join(dir, "ca.crt")
	writeTestKeyAndCA(t, keyFile, caFile)
	const saDir = "/var/run/secrets/kubernetes.io/serviceaccount/"
	for _, want := range []string{"/etc/portcullis/keys/es256.pem", saDir + "ca.crt", saDir + "token"} {
		if !strings.Contains(cfgText, want) {
			t.Fatalf("config does not use %s", want)
		}
	}
	cfgText = strings.NewReplacer("/etc/portcullis/keys/es256.pem", keyFile, saDir+"ca.crt", caFile, saDir+"token", filepath.Join(dir, "token")).Replace(cfgText)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "", nil, "-check-config", "-config", cfgPath); code != 0 {
		t.Fatalf("-check-config: exit %d\n%s%s", code, out, errOut)
	}
	cfg, _, err := config.Load(cfgPath, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var fed *config.Federated
	for _, c := range cfg.Issuer.Clients {
		if c.Federated != nil {
			fed = c.Federated
		}
	}
	if fed == nil {
		t.Fatal("no federated client in the recipe")
	}
	ti := cfg.TrustedIssuers[0]
	if ti.Issuer != fed.Issuer || !slices.Contains(ti.Audience, "portcullis") || ti.BearerTokenFile == "" || ti.CAFile == "" {
		t.Errorf("trusted issuer %+v does not fit the federated client %+v", ti, fed)
	}
	if sa := dig(find(pc, "Deployment"), "spec", "template", "spec", "serviceAccountName"); sa != dig(find(manifests(t, "rbac.yaml"), "ClusterRoleBinding"), "subjects", 0, "name") {
		t.Errorf("rbac.yaml binds another service account than Portcullis's %v", sa)
	}

	cl := manifests(t, "client.yaml")
	dep := find(cl, "Deployment")
	ns, sa := dig(dep, "metadata", "namespace"), dig(dep, "spec", "template", "spec", "serviceAccountName")
	if want := "system:serviceaccount:" + ns.(string) + ":" + sa.(string); fed.Subject != want {
		t.Errorf("federated.subject %s, but the client pod runs as %s", fed.Subject, want)
	}
	tok := dig(dep, "spec", "template", "spec", "volumes", 0, "projected", "sources", 0, "serviceAccountToken")
	if dig(tok, "audience") != "portcullis" || dig(tok, "expirationSeconds") != 600 {
		t.Errorf("projected token %v, want audience portcullis, expirationSeconds 600", tok)
	}
}

func writeTestKeyAndCA(t *testing.T, keyFile, caFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	ca, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca}), 0o600); err != nil {
		t.Fatal(err)
	}
}
