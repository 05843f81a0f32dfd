package issuer

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func postForm(t *testing.T, h http.Handler, client, form string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", "/", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, testSecret)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func mint(t *testing.T, iss *Issuer, client, scope string) string {
	t.Helper()
	rec := postForm(t, iss.TokenHandler(), client, "grant_type=client_credentials&scope="+url.QueryEscape(scope))
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.AccessToken == "" {
		t.Fatalf("token: %d %s", rec.Code, rec.Body)
	}
	return resp.AccessToken
}

func TestRevokeAndIntrospect(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t, testConfig(t), Options{})
	tok := mint(t, iss, "billing", "orders:read")
	introspect := func() map[string]any {
		rec := postForm(t, iss.IntrospectHandler(), "other", "token="+tok)
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		return m
	}
	if m := introspect(); m["active"] != true || m["sub"] != "billing" || m["scope"] != "orders:read" || m["client_id"] != "billing" {
		t.Errorf("introspect active token = %v", m)
	}
	if rec := postForm(t, iss.RevokeHandler(), "other", "token="+tok); rec.Code != 400 || !strings.Contains(rec.Body.String(), "unauthorized_client") {
		t.Errorf("another client's revoke = %d %s, want 400 unauthorized_client", rec.Code, rec.Body)
	}
	if _, err := iss.Verify(tok); err != nil {
		t.Fatalf("token revoked by another client: %v", err)
	}
	if rec := postForm(t, iss.RevokeHandler(), "billing", "token=not-a-token"); rec.Code != 200 {
		t.Errorf("revoke of an invalid token = %d, want 200 (RFC 7009 §2.2)", rec.Code)
	}
	if rec := postForm(t, iss.RevokeHandler(), "billing", "token_type_hint=access_token"); rec.Code != 400 {
		t.Errorf("revoke without token = %d, want 400", rec.Code)
	}
	if rec := postForm(t, iss.RevokeHandler(), "billing", "token="+tok); rec.Code != 200 {
		t.Fatalf("revoke = %d %s", rec.Code, rec.Body)
	}
	if _, err := iss.Verify(tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("after revoke: %v, want ErrRevoked", err)
	}
	if m := introspect(); m["active"] != false || len(m) != 1 {
		t.Errorf("introspect revoked token = %v, want only active:false", m)
	}
}

func TestAdminRevokeSubject(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	cfg := testConfig(t)
	iss := newTestIssuer(t, cfg, Options{Now: clk.now})
	admin, _ := iss.Sign(Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: testIssuer, Subject: "ops", Audience: jwt.ClaimStrings{"orders-api"},
		ExpiresAt: jwt.NewNumericDate(clk.t.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(clk.t)}, Scope: "portcullis:admin"})
	victim := mint(t, iss, "billing", "orders:read")
	call := func(token, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/admin/revoke-tokens", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		iss.AdminRevokeHandler().ServeHTTP(rec, req)
		return rec
	}
	if rec := call("", `{"subject":"billing"}`); rec.Code != 401 {
		t.Errorf("no token: %d, want 401", rec.Code)
	}
	if rec := call(victim, `{"subject":"billing"}`); rec.Code != 403 {
		t.Errorf("token without admin scope: %d, want 403", rec.Code)
	}
	if rec := call(admin, `{"nope":1}`); rec.Code != 400 {
		t.Errorf("bad body: %d, want 400", rec.Code)
	}
	clk.t = clk.t.Add(2 * time.Second)
	if rec := call(admin, `{"user_id":"billing"}`); rec.Code != 200 {
		t.Fatalf("admin revoke: %d %s", rec.Code, rec.Body)
	}
	if _, err := iss.Verify(victim); !errors.Is(err, ErrRevoked) {
		t.Errorf("subject's earlier token: %v, want ErrRevoked", err)
	}
	clk.t = clk.t.Add(2 * time.Second)
	if _, err := iss.Verify(mint(t, iss, "billing", "orders:read")); err != nil {
		t.Errorf("token issued after the revocation: %v, want valid", err)
	}
}
