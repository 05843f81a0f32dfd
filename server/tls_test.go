package server

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

type tlsEnv struct {
	*edgeEnv
	pki       *pki
	serverPEM []byte
	leaf      *x509.Certificate
	vol       *secretVolume
}

// startTLS runs Portcullis with tls; tlsExtra adds keys under tls:.
func startTLS(t *testing.T, tlsExtra string) *tlsEnv {
	t.Helper()
	p := newPKI(t, "Test CA")
	certPEM, keyPEM, leaf := p.issue(t, pkix.Name{CommonName: "portcullis.test"}, true, time.Now().Add(48*time.Hour).Truncate(time.Second))
	dir := t.TempDir()
	vol := &secretVolume{dir: dir}
	vol.write(t, map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": p.caPEM})
	e := startEdge(t, "tls:\n  cert_file: tls.crt\n  key_file: tls.key\n"+tlsExtra, dir)
	return &tlsEnv{edgeEnv: e, pki: p, serverPEM: certPEM, leaf: leaf, vol: vol}
}

func (e *tlsEnv) client(h2 bool, certs ...tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.pki.pool()}
	if len(certs) > 0 {
		// Present the certificate whatever CAs the server names (Go's
		// default would stay silent for one from another CA).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestTLSListener(t *testing.T) {
	e := startTLS(t, "")
	for _, h2 := range []bool{true, false} {
		e.up.reset()
		req, _ := http.NewRequest("GET", "https://"+e.addr+"/public/x", nil)
		req.Header.Set("X-Forwarded-Proto", "http") // a client's claim, never believed
		resp, err := e.client(h2).Do(req)
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		resp.Body.Close()
		if wantMajor := map[bool]int{true: 2, false: 1}[h2]; resp.StatusCode != 200 || resp.ProtoMajor != wantMajor {
			t.Errorf("h2=%v: %d over HTTP/%d", h2, resp.StatusCode, resp.ProtoMajor)
		}
		checkSecurityHeaders(t, resp.Proto, resp.Header)
		if got := e.up.got(); len(got) != 1 || got[0].header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("h2=%v: upstream got %+v, want X-Forwarded-Proto https", h2, got)
		}
	}

	// Over HTTP/2 the 32 KiB header limit is ours too, with our headers.
	e.up.reset()
	req, _ := http.NewRequest("GET", "https://"+e.addr+"/public/x", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 40<<10))
	resp, err := e.client(true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 431 || resp.ProtoMajor != 2 {
		t.Errorf("40 KiB of headers over HTTP/2: %d over %s, want 431", resp.StatusCode, resp.Proto)
	}
	checkSecurityHeaders(t, "HTTP/2 431", resp.Header)
	if got := e.up.got(); len(got) != 0 {
		t.Errorf("upstream received %d requests", len(got))
	}

	// Plain HTTP on the TLS port gets nothing served.
	c := dialRaw(t, e.addr)
	c.send(t, "GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(c.br, nil); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP served on the TLS listener")
	}

	// TLS 1.1 is refused.
	if conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pki.pool(), MaxVersion: tls.VersionTLS11}); err == nil {
		conn.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}

	// The framing guard applies to HTTP/1.1 over TLS.
	e.up.reset()
	tc, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pki.pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(tc, "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+smuggled)
	br := bufio.NewReader(tc)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 {
		t.Errorf("CL.TE over TLS: %d, want 400", resp.StatusCode)
	}
	checkSecurityHeaders(t, "refusal over TLS", resp.Header)
	io.Copy(io.Discard, resp.Body)
	if _, err := br.ReadByte(); err == nil {
		t.Error("connection still open after the refusal")
	}
	if got := e.up.got(); len(got) != 0 {
		t.Errorf("upstream received %+v", got)
	}

	// The expiry metric is the leaf's NotAfter, on the (plain) admin listener.
	if got := expiryMetric(t, e.admin); got != fmt.Sprint(e.leaf.NotAfter.Unix()) {
		t.Errorf("tls_certificate_expiry_timestamp_seconds = %s, want %d", got, e.leaf.NotAfter.Unix())
	}
}

func expiryMetric(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "tls_certificate_expiry_timestamp_seconds "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return fmt.Sprint(int64(f))
		}
	}
	return "absent"
}

func TestNoTLSNoExpiryMetric(t *testing.T) {
	e := startEdge(t, "", "")
	if got := expiryMetric(t, e.admin); got != "absent" {
		t.Errorf("expiry metric exported without tls: %s", got)
	}
}

func TestClientCertificates(t *testing.T) {
	for _, mode := range []string{"optional", "required"} {
		t.Run(mode, func(t *testing.T) {
			e := startTLS(t, "  client_ca_file: ca.crt\n  client_auth: "+mode+"\n")
			certPEM, keyPEM, _ := e.pki.issue(t, pkix.Name{CommonName: "alice", Organization: []string{"Example"}}, false, time.Now().Add(time.Hour))
			good, _ := tls.X509KeyPair(certPEM, keyPEM)
			other := newPKI(t, "Other CA")
			oc, ok, _ := other.issue(t, pkix.Name{CommonName: "mallory"}, false, time.Now().Add(time.Hour))
			bad, _ := tls.X509KeyPair(oc, ok)

			get := func(c *http.Client) (*http.Response, error) {
				req, _ := http.NewRequest("GET", "https://"+e.addr+"/public/x", nil)
				req.Header.Set("X-Auth-Client-Cert-Subject", "CN=spoofed")
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				return resp, err
			}
			for _, h2 := range []bool{true, false} {
				e.up.reset()
				if _, err := get(e.client(h2, good)); err != nil {
					t.Fatalf("h2=%v, verified certificate: %v", h2, err)
				}
				if got := e.up.got(); len(got) != 1 || got[0].header.Values("X-Auth-Client-Cert-Subject")[0] != "CN=alice,O=Example" {
					t.Errorf("h2=%v: upstream got %+v, want the subject CN=alice,O=Example", h2, got)
				}
				e.up.reset()
				if _, err := get(e.client(h2, bad)); err == nil {
					t.Errorf("h2=%v: a certificate from another CA was accepted", h2)
				}
				if got := e.up.got(); len(got) != 0 {
					t.Errorf("upstream received %+v", got)
				}
				e.up.reset()
				_, err := get(e.client(h2))
				switch {
				case mode == "required" && err == nil:
					t.Errorf("h2=%v: required mode accepted a handshake without a certificate", h2)
				case mode == "optional" && err != nil:
					t.Errorf("h2=%v: optional mode refused a client without a certificate: %v", h2, err)
				case mode == "optional":
					if got := e.up.got(); len(got) != 1 || got[0].header.Get("X-Auth-Client-Cert-Subject") != "" {
						t.Errorf("h2=%v: spoofed subject reached the upstream: %+v", h2, got)
					}
				}
			}
		})
	}
}

// TestCertificateRenewal: the files are swapped as Kubernetes swaps a
// Secret volume; new connections get the new certificate, an open
// keep-alive connection keeps working, a broken new file changes nothing.
func TestCertificateRenewal(t *testing.T) {
	e := startTLS(t, "")
	client := e.client(false)
	serial := func(resp *http.Response) int64 { return resp.TLS.PeerCertificates[0].SerialNumber.Int64() }
	get := func(c *http.Client) *http.Response {
		t.Helper()
		resp, err := c.Get("https://" + e.addr + "/public/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	old := serial(get(client)) // leaves an idle keep-alive connection

	// A broken new certificate: refused, the old one keeps serving.
	e.vol.write(t, map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": []byte("nor a key")})
	if err := e.srv.certs.Reload(); err == nil {
		t.Error("Reload accepted a broken certificate")
	}
	if got := serial(get(e.client(false))); got != old {
		t.Errorf("serial %d after a failed reload, want %d", got, old)
	}

	// A good one, swapped in by symlink as Kubernetes does and read again
	// as a reload does (the reload watcher notices the files' contents
	// change: they are *_file settings; see reload_test.go).
	certPEM, keyPEM, leaf := e.pki.issue(t, pkix.Name{CommonName: "portcullis.test"}, true, time.Now().Add(72*time.Hour).Truncate(time.Second))
	e.vol.write(t, map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM})
	if err := e.srv.certs.Reload(); err != nil {
		t.Fatalf("Reload of a good certificate: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if got := serial(get(e.client(false))); got == leaf.SerialNumber.Int64() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new connections never got the renewed certificate")
		}
		time.Sleep(20 * time.Millisecond) // polling until a new connection shows it
	}
	// The connection opened before the swap is still served (reused).
	if got := serial(get(client)); got != old {
		t.Errorf("the keep-alive connection now shows serial %d; it was not the old connection", got)
	}
	if got := expiryMetric(t, e.admin); got != fmt.Sprint(leaf.NotAfter.Unix()) {
		t.Errorf("expiry metric %s, want %d", got, leaf.NotAfter.Unix())
	}
}

// TestRealTLSClients: curl over HTTP/2 and HTTP/1.1 (with a client
// certificate) and openssl s_client's view of versions and ALPN.
func TestRealTLSClients(t *testing.T) {
	curl := redistest.Require(t, "curl")
	openssl := redistest.Require(t, "openssl")
	e := startTLS(t, "  client_ca_file: ca.crt\n")
	dir := t.TempDir()
	certPEM, keyPEM, _ := e.pki.issue(t, pkix.Name{CommonName: "curl-client", Organization: []string{"Example"}}, false, time.Now().Add(time.Hour))
	writeFile(t, filepath.Join(dir, "ca.pem"), e.pki.caPEM)
	writeFile(t, filepath.Join(dir, "client.pem"), certPEM)
	writeFile(t, filepath.Join(dir, "client.key"), keyPEM)
	for _, proto := range []string{"--http2", "--http1.1"} {
		e.up.reset()
		out, err := exec.Command(curl, "-sS", "-i", proto, "--cacert", filepath.Join(dir, "ca.pem"),
			"--cert", filepath.Join(dir, "client.pem"), "--key", filepath.Join(dir, "client.key"),
			"https://127.0.0.1:"+strings.Split(e.addr, ":")[1]+"/public/x").CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", proto, err, out)
		}
		status := map[string]string{"--http2": "HTTP/2 200", "--http1.1": "HTTP/1.1 200"}[proto]
		if !strings.HasPrefix(string(out), status) || !strings.Contains(strings.ToLower(string(out)), "x-frame-options: deny") {
			t.Errorf("curl %s:\n%s", proto, out)
		}
		if got := e.up.got(); len(got) != 1 || got[0].header.Get("X-Auth-Client-Cert-Subject") != "CN=curl-client,O=Example" {
			t.Errorf("curl %s: upstream got %+v", proto, got)
		}
	}
	// A chunked upload large enough for curl to ask Expect: 100-continue,
	// through the guard over TLS.
	e.up.reset()
	upload := strings.Repeat("0123456789abcdef", 128<<10) // 2 MiB
	writeFile(t, filepath.Join(dir, "upload"), []byte(upload))
	out, err := exec.Command(curl, "-sS", "--http1.1", "--cacert", filepath.Join(dir, "ca.pem"),
		"-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue", "--data-binary", "@"+filepath.Join(dir, "upload"),
		"https://127.0.0.1:"+strings.Split(e.addr, ":")[1]+"/public/upload").CombinedOutput()
	if err != nil || string(out) != fmt.Sprintf("ok %d", len(upload)) {
		t.Errorf("curl chunked upload: %v %.200s", err, out)
	}
	if got := e.up.got(); len(got) != 1 || got[0].body != upload {
		t.Errorf("upstream did not receive the upload whole")
	}
	sclient := func(args ...string) string {
		cmd := exec.Command(openssl, append([]string{"s_client", "-connect", e.addr, "-CAfile", filepath.Join(dir, "ca.pem")}, args...)...)
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := sclient("-alpn", "h2,http/1.1"); !strings.Contains(out, "ALPN protocol: h2") || !strings.Contains(out, "Verify return code: 0 (ok)") {
		t.Errorf("openssl s_client -alpn h2:\n%s", out)
	}
	if out := sclient("-alpn", "http/1.1", "-tls1_2"); !strings.Contains(out, "ALPN protocol: http/1.1") || !strings.Contains(out, "TLSv1.2") {
		t.Errorf("openssl s_client -tls1_2:\n%s", out)
	}
	if out := sclient("-tls1_1"); strings.Contains(out, "Verify return code: 0 (ok)") && !strings.Contains(out, "alert") {
		t.Errorf("openssl s_client -tls1_1 negotiated:\n%s", out)
	}
}

// TestCertSourceConfigure: a reloaded configuration's files and minimum
// version apply to new handshakes; a broken one changes nothing.
func TestCertSourceConfigure(t *testing.T) {
	e := startTLS(t, "")
	cfg := e.srv.cfg.TLS
	next := *cfg
	next.MinVersion = "1.3"
	if err := e.srv.certs.Configure(next); err != nil {
		t.Fatal(err)
	}
	if conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pki.pool(), MaxVersion: tls.VersionTLS12}); err == nil {
		conn.Close()
		t.Error("TLS 1.2 accepted after min_version 1.3")
	}
	broken := next
	broken.CertFile = filepath.Join(t.TempDir(), "missing.crt")
	if err := e.srv.certs.Configure(broken); err == nil {
		t.Error("a missing certificate file was applied")
	}
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pki.pool()})
	if err != nil {
		t.Fatalf("serving stopped after a failed reconfiguration: %v", err)
	}
	conn.Close()
}
