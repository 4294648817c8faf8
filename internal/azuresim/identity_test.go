package azuresim_test

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// certAssertion signs a client assertion as MSAL does (PS256, x5t#S256),
// with claims changed by edit.
func certAssertion(t *testing.T, srv *azuresim.Server, certPEM, keyPEM []byte, edit func(jwt.MapClaims)) string {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"aud": srv.URL() + "/" + srv.TenantID() + "/oauth2/v2.0/token",
		"iss": srv.ClientID(), "sub": srv.ClientID(), "jti": "1",
		"nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
	if edit != nil {
		edit(claims)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodPS256, claims)
	sum := sha256.Sum256(pair.Leaf.Raw)
	tok.Header["x5t#S256"] = base64.StdEncoding.EncodeToString(sum[:])
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		t.Fatalf("key %T cannot sign", pair.PrivateKey)
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// postToken sends a client credentials grant with a client assertion and
// returns the status and the AADSTS error code ("" on success).
func postToken(t *testing.T, srv *azuresim.Server, assertion string) (int, string) {
	t.Helper()
	form := url.Values{
		"grant_type": {"client_credentials"}, "client_id": {srv.ClientID()}, "scope": {srv.URL() + "/.default"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion},
	}
	resp, err := http.PostForm(srv.URL()+"/"+srv.TenantID()+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		ErrorCodes  []int  `json:"error_codes"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if len(body.ErrorCodes) > 0 {
		return resp.StatusCode, fmt.Sprintf("AADSTS%d", body.ErrorCodes[0])
	}
	return resp.StatusCode, ""
}

func TestCertificateClientAssertions(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	certPEM, keyPEM, err := srv.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := azuresim.Start(azuresim.Options{CA: srv.CA()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	foreignCert, foreignKey, err := other.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		assertion string
		want      string // "" accepted, else the AADSTS code
	}{
		{"registered certificate", certAssertion(t, srv, certPEM, keyPEM, nil), ""},
		{"unregistered certificate", certAssertion(t, srv, foreignCert, foreignKey, nil), "AADSTS700027"},
		{"issued for another application", certAssertion(t, srv, certPEM, keyPEM, func(c jwt.MapClaims) { c["sub"] = "someone-else" }), "AADSTS700021"},
		{"for another token endpoint", certAssertion(t, srv, certPEM, keyPEM, func(c jwt.MapClaims) { c["aud"] = "https://login.microsoftonline.com/x/oauth2/v2.0/token" }), "AADSTS700212"},
		{"expired", certAssertion(t, srv, certPEM, keyPEM, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "AADSTS700024"},
		{"not a JWT", "not.a.jwt", "AADSTS50027"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := postToken(t, srv, tt.assertion)
			if code != tt.want || (tt.want == "" && status != http.StatusOK) {
				t.Fatalf("token endpoint: %d %s, want %q", status, code, tt.want)
			}
		})
	}

	// A signature by another key under the registered certificate's
	// thumbprint is refused.
	forged := certAssertion(t, srv, certPEM, keyPEM, nil)
	parts := strings.Split(forged, ".")
	wrong := strings.Split(certAssertion(t, srv, foreignCert, foreignKey, nil), ".")
	if status, code := postToken(t, srv, parts[0]+"."+parts[1]+"."+wrong[2]); code != "AADSTS700027" {
		t.Errorf("forged signature: %d %s, want AADSTS700027", status, code)
	}
}

func TestAzureDevOpsOIDCEndpoint(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	reqURL, accessToken, connection := srv.AzureDevOpsOIDCRequest()
	call := func(method, token, query string) (int, string) {
		req, err := http.NewRequest(method, reqURL+"?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			OIDCToken string `json:"oidcToken"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.OIDCToken
	}
	good := "api-version=7.1&serviceConnectionId=" + connection
	status, tok := call(http.MethodPost, accessToken, good)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("POST: %d %q", status, tok)
	}
	if status, _ := postToken(t, srv, tok); status != http.StatusOK {
		t.Errorf("the token endpoint refused Azure DevOps' token: %d", status)
	}
	for _, c := range []struct {
		method, token, query string
		want                 int
	}{
		{http.MethodGet, accessToken, good, http.StatusMethodNotAllowed},
		{http.MethodPost, "wrong", good, http.StatusUnauthorized},
		{http.MethodPost, accessToken, "serviceConnectionId=" + connection, http.StatusBadRequest},
		{http.MethodPost, accessToken, "api-version=7.1&serviceConnectionId=other", http.StatusNotFound},
	} {
		if status, _ := call(c.method, c.token, c.query); status != c.want {
			t.Errorf("%s ?%s with token %q: %d, want %d", c.method, c.query, c.token, status, c.want)
		}
	}
}

func TestIMDSEndpoint(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	get := func(query string, metadata bool) (int, map[string]string) {
		req, err := http.NewRequest(http.MethodGet, srv.IMDSEndpoint()+"?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		if metadata {
			req.Header.Set("Metadata", "true")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out := map[string]string{}
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	q := "api-version=2018-02-01&resource=" + url.QueryEscape(srv.URL())
	status, out := get(q, true)
	if status != http.StatusOK || out["access_token"] == "" || out["expires_on"] == "" || out["token_type"] != "Bearer" {
		t.Fatalf("IMDS: %d %v", status, out)
	}
	if status, out := get(q, false); status != http.StatusBadRequest || !strings.Contains(out["error_description"], "metadata header") {
		t.Errorf("without Metadata: true: %d %v", status, out)
	}
	if status, _ := get("resource="+url.QueryEscape(srv.URL()), true); status != http.StatusBadRequest {
		t.Errorf("without api-version: %d", status)
	}
	if status, _ := get(q+"&client_id=00000000-0000-0000-0000-000000000000", true); status != http.StatusBadRequest {
		t.Errorf("another identity: %d", status)
	}
}
