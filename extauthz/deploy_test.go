package extauthz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"
)

const meshDir = "../deploy/mesh"

// loadEnvoy decodes an Envoy bootstrap strictly: unknown fields, unknown
// Any types and values of the wrong type are errors (protojson with
// DiscardUnknown false), then runs the generated validation rules.
func loadEnvoy(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		t.Fatalf("%s does not decode into Envoy's bootstrap: %v", path, err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("%s breaks Envoy's validation rules: %v", path, err)
	}
	return &b
}

// extAuthzOf returns the ext_authz filter config of the first listener.
func extAuthzOf(t *testing.T, b *bootstrapv3.Bootstrap) *extauthzv3.ExtAuthz {
	t.Helper()
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					t.Fatalf("filter %s: %v", f.GetName(), err)
				}
				for _, hf := range hcm.GetHttpFilters() {
					if hf.GetName() != "envoy.filters.http.ext_authz" {
						continue
					}
					var ea extauthzv3.ExtAuthz
					if err := hf.GetTypedConfig().UnmarshalTo(&ea); err != nil {
						t.Fatalf("ext_authz typed_config: %v", err)
					}
					return &ea
				}
			}
		}
	}
	t.Fatal("no envoy.filters.http.ext_authz filter")
	return nil
}

func clusterNamed(b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// TestEnvoyGRPCRecipe: the gRPC recipe is a valid Envoy bootstrap whose
// ext_authz filter calls this server's API version over HTTP/2, fails
// closed, and health-checks the service name the health service reports.
func TestEnvoyGRPCRecipe(t *testing.T) {
	t.Parallel()
	b := loadEnvoy(t, filepath.Join(meshDir, "envoy.yaml"))
	ea := extAuthzOf(t, b)
	if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 || ea.GetFailureModeAllow() {
		t.Errorf("transport_api_version %v, failure_mode_allow %v; want V3, false", ea.GetTransportApiVersion(), ea.GetFailureModeAllow())
	}
	cluster := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	c := clusterNamed(b, cluster)
	if c == nil {
		t.Fatalf("grpc_service names cluster %q, which is not defined", cluster)
	}
	opts, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	var po upstreamhttpv3.HttpProtocolOptions
	if !ok || opts.UnmarshalTo(&po) != nil || po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %s does not speak HTTP/2 (gRPC needs it)", cluster)
	}
	port := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
	if port != 9191 {
		t.Errorf("cluster %s port %d, want grpc_listen's 9191", cluster, port)
	}
	hc := c.GetHealthChecks()
	if len(hc) != 1 || hc[0].GetGrpcHealthCheck().GetServiceName() != ServiceName {
		t.Errorf("health check %v, want grpc_health_check of %s", hc, ServiceName)
	}
}

// TestEnvoyHTTPRecipe: the HTTP ext_authz recipe for /auth/verify decodes
// strictly too.
func TestEnvoyHTTPRecipe(t *testing.T) {
	t.Parallel()
	ea := extAuthzOf(t, loadEnvoy(t, "../deploy/ingress/envoy.yaml"))
	if ea.GetHttpService().GetPathPrefix() != "/auth/verify" {
		t.Errorf("path_prefix %q, want /auth/verify", ea.GetHttpService().GetPathPrefix())
	}
}

// k8sDocs decodes every document of a Kubernetes manifest.
func k8sDocs(t *testing.T, name string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(meshDir, name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		docs = append(docs, d)
	}
}

// at walks a decoded document: keys for maps, "0" for a list's first item.
func at(d any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch v := d.(type) {
		case map[string]any:
			d = v[k]
		case []any:
			if k != "0" || len(v) == 0 {
				return nil
			}
			d = v[0]
		default:
			return nil
		}
	}
	return d
}

// TestKubernetesRecipes: each manifest holds the kinds it should, and they
// all point at the Service port grpc_listen serves.
func TestKubernetesRecipes(t *testing.T) {
	t.Parallel()
	type field struct {
		path string
		want any
	}
	tests := []struct {
		file   string
		kinds  []string // apiVersion/kind, in order
		fields map[int][]field
	}{
		{"portcullis.yaml", []string{"v1/ConfigMap", "apps/v1/Deployment", "v1/Service", "networking.k8s.io/v1/NetworkPolicy"}, map[int][]field{
			1: {{"spec.template.spec.containers.0.readinessProbe.grpc.port", 9191}},
			2: {{"spec.ports.0.port", 9191}, {"spec.ports.0.appProtocol", "grpc"}, {"metadata.name", "portcullis"}, {"metadata.namespace", "portcullis"}},
		}},
		{"istio.yaml", []string{"install.istio.io/v1alpha1/IstioOperator", "security.istio.io/v1/AuthorizationPolicy"}, map[int][]field{
			0: {{"spec.meshConfig.extensionProviders.0.name", "portcullis"},
				{"spec.meshConfig.extensionProviders.0.envoyExtAuthzGrpc.service", "portcullis.portcullis.svc.cluster.local"},
				{"spec.meshConfig.extensionProviders.0.envoyExtAuthzGrpc.port", 9191},
				{"spec.meshConfig.extensionProviders.0.envoyExtAuthzGrpc.failOpen", false}},
			1: {{"spec.action", "CUSTOM"}, {"spec.provider.name", "portcullis"}},
		}},
		{"envoy-gateway.yaml", []string{"gateway.envoyproxy.io/v1alpha1/SecurityPolicy", "gateway.networking.k8s.io/v1beta1/ReferenceGrant"}, map[int][]field{
			0: {{"spec.extAuth.grpc.backendRefs.0.name", "portcullis"}, {"spec.extAuth.grpc.backendRefs.0.namespace", "portcullis"},
				{"spec.extAuth.grpc.backendRefs.0.port", 9191}, {"spec.extAuth.failOpen", false}, {"spec.targetRefs.0.kind", "HTTPRoute"}},
			1: {{"spec.to.0.name", "portcullis"}, {"spec.from.0.kind", "SecurityPolicy"}, {"metadata.namespace", "portcullis"}},
		}},
		{"contour.yaml", []string{"projectcontour.io/v1alpha1/ExtensionService", "projectcontour.io/v1/HTTPProxy"}, map[int][]field{
			0: {{"spec.protocol", "h2c"}, {"spec.services.0.name", "portcullis"}, {"spec.services.0.port", 9191}, {"metadata.name", "portcullis"}},
			1: {{"spec.virtualhost.authorization.extensionRef.name", "portcullis"}, {"spec.virtualhost.authorization.extensionRef.namespace", "portcullis"},
				{"spec.virtualhost.authorization.failOpen", false}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			docs := k8sDocs(t, tc.file)
			if len(docs) != len(tc.kinds) {
				t.Fatalf("%d documents, want %d", len(docs), len(tc.kinds))
			}
			for i, d := range docs {
				if got := fmt.Sprint(at(d, "apiVersion"), "/", at(d, "kind")); got != tc.kinds[i] {
					t.Errorf("document %d is %s, want %s", i, got, tc.kinds[i])
				}
				if at(d, "metadata.name") == nil {
					t.Errorf("document %d has no metadata.name", i)
				}
				for _, f := range tc.fields[i] {
					if got := at(d, f.path); got != f.want {
						t.Errorf("document %d: %s = %v, want %v", i, f.path, got, f.want)
					}
				}
			}
		})
	}
	// The ConfigMap's Portcullis config serves gRPC on the port everyone uses.
	cm := k8sDocs(t, "portcullis.yaml")[0]
	var pc struct {
		GRPCListen string `yaml:"grpc_listen"`
	}
	conf, _ := at(cm, "data").(map[string]any)["config.yaml"].(string)
	if err := yaml.Unmarshal([]byte(conf), &pc); err != nil || pc.GRPCListen != ":9191" {
		t.Errorf("portcullis.yaml grpc_listen %q, %v; want :9191", pc.GRPCListen, err)
	}
}

// TestEnvoyDecodingIsStrict: a misspelled field or an unknown typed_config
// type fails the decoding the recipes go through.
func TestEnvoyDecodingIsStrict(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(meshDir, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(string) string{
		"misspelled field": func(s string) string { return strings.Replace(s, "failure_mode_allow:", "failure_mode_alow:", 1) },
		"unknown type":     func(s string) string { return strings.Replace(s, "ext_authz.v3.ExtAuthz", "ext_authz.v3.ExtAuth", 1) },
	} {
		var doc any
		if err := yaml.Unmarshal([]byte(mutate(string(raw))), &doc); err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(doc)
		if err := protojson.Unmarshal(js, &bootstrapv3.Bootstrap{}); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}
