package azuresim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

const (
	// federatedAudience is the audience Entra ID requires of a workload
	// identity federation assertion.
	federatedAudience = "api://AzureADTokenExchange"
	jwtBearerType     = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	accessTokenTTL    = time.Hour
	// tokenClockSkew is how far in the past nbf is set, as Entra ID does.
	tokenClockSkew = 5 * time.Minute
)

// entraError is Entra ID's OAuth error response.
type entraError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri,omitempty"`
}

// writeEntraError answers an OAuth error in Entra ID's shape. code is the
// AADSTS number, which Entra repeats at the start of the description.
func (s *Server) writeEntraError(w http.ResponseWriter, r *http.Request, status int, oauthErr string, code int, description string) {
	traceID, correlationID := uuid.NewString(), r.Header.Get("client-request-id")
	if correlationID == "" {
		correlationID = uuid.NewString()
	}
	now := s.now().UTC()
	writeJSON(w, status, entraError{
		Error: oauthErr,
		ErrorDescription: fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
			code, description, traceID, correlationID, now.Format("2006-01-02 15:04:05Z")),
		ErrorCodes:    []int{code},
		Timestamp:     now.Format("2006-01-02 15:04:05Z"),
		TraceID:       traceID,
		CorrelationID: correlationID,
		ErrorURI:      s.baseURL(r) + "/error?code=" + strconv.Itoa(code),
	})
}

// serveEntra answers the Entra ID endpoints under /{tenant}/.
func (s *Server) serveEntra(w http.ResponseWriter, r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 {
		writeARMError(w, http.StatusNotFound, "NotFound", "The requested path was not found.")
		return "unknown"
	}
	tenant, rest := parts[0], strings.ToLower(strings.Join(parts[1:], "/"))
	var kind string
	switch rest {
	case "v2.0/.well-known/openid-configuration":
		kind = "openid"
		if s.checkTenant(w, r, tenant, false) {
			s.serveOpenIDConfiguration(w, r, true)
		}
	case ".well-known/openid-configuration":
		kind = "openid"
		if s.checkTenant(w, r, tenant, false) {
			s.serveOpenIDConfiguration(w, r, false)
		}
	case "discovery/v2.0/keys", "discovery/keys":
		kind = "keys"
		if s.checkTenant(w, r, tenant, false) {
			writeJSON(w, http.StatusOK, map[string]any{"keys": []any{s.tokenKey.jwk(s.issuer())}})
		}
	case "oauth2/v2.0/token":
		kind = "token"
		if s.checkTenant(w, r, tenant, true) {
			s.serveToken(w, r, true)
		}
	case "oauth2/token":
		kind = "token"
		if s.checkTenant(w, r, tenant, true) {
			s.serveToken(w, r, false)
		}
	default:
		writeARMError(w, http.StatusNotFound, "NotFound", "The requested path was not found.")
		kind = "unknown"
	}
	return kind
}

// checkTenant accepts this server's tenant id, and for discovery documents
// also the multi-tenant aliases Entra ID serves.
func (s *Server) checkTenant(w http.ResponseWriter, r *http.Request, tenant string, token bool) bool {
	if strings.EqualFold(tenant, s.tenantID) {
		return true
	}
	if !token {
		switch strings.ToLower(tenant) {
		case "common", "organizations":
			return true
		}
	}
	s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", 90002,
		fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
	return false
}

// issuer is the issuer of access tokens (Entra ID v1 tokens, which ARM gets).
func (s *Server) issuer() string { return "https://sts.windows.net/" + s.tenantID + "/" }

// oidcIssuer is the issuer of federated (workload identity) tokens.
func (s *Server) oidcIssuer() string { return s.url + "/_sim/oidc" }

func (s *Server) serveOpenIDConfiguration(w http.ResponseWriter, r *http.Request, v2 bool) {
	base := s.baseURL(r) + "/" + s.tenantID
	oauth := base + "/oauth2"
	issuer, keys := s.issuer(), base+"/discovery/keys"
	if v2 {
		oauth += "/v2.0"
		issuer, keys = base+"/v2.0", base+"/discovery/v2.0/keys"
	}
	host := strings.TrimPrefix(s.baseURL(r), "https://")
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        oauth + "/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              keys,
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "token id_token", "token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                issuer,
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     s.baseURL(r) + "/oidc/userinfo",
		"authorization_endpoint":                oauth + "/authorize",
		"device_authorization_endpoint":         oauth + "/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  oauth + "/logout",
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver", "oid", "appid"},
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   host,
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          "graph.microsoft.com",
		"rbac_url":                              "https://pas.windows.net",
	})
}

// serveToken is the client credentials grant of the v2.0 (scope=) and v1
// (resource=) token endpoints. The client authenticates with its secret or
// with a federated assertion this server issued.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, v2 bool) {
	if r.Method != http.MethodPost {
		s.writeEntraError(w, r, http.StatusMethodNotAllowed, "invalid_request", 900561,
			"The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'grant_type'.")
		return
	}
	form := r.PostForm
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		if gt == "" {
			s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", 900144,
				"The request body must contain the following parameter: 'grant_type'.")
			return
		}
		s.writeEntraError(w, r, http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return
	}
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
	}
	if clientID == "" {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'client_id'.")
		return
	}
	if !strings.EqualFold(clientID, s.clientID) {
		s.writeEntraError(w, r, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
				clientID, s.tenantID))
		return
	}
	appidacr := "1"
	switch assertion := form.Get("client_assertion"); {
	case secret != "":
		if secret != s.clientSecret {
			s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", 7000215,
				fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", s.clientID))
			return
		}
	case assertion != "":
		if form.Get("client_assertion_type") != jwtBearerType {
			s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", 50027,
				"Invalid client_assertion_type: it must be '"+jwtBearerType+"'.")
			return
		}
		if code, msg := s.checkClientAssertion(assertion, clientID, r.URL.Path); code != 0 {
			s.writeEntraError(w, r, http.StatusBadRequest, "invalid_client", code, msg)
			return
		}
		appidacr = "2"
	default:
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", 7000216,
			"'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	}

	resource := form.Get("resource")
	if v2 {
		var ok bool
		if resource, ok = resourceFromScope(form.Get("scope")); !ok {
			s.writeEntraError(w, r, http.StatusBadRequest, "invalid_scope", 1002012,
				fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", form.Get("scope")))
			return
		}
	} else if resource == "" {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_resource", 500011,
			"The resource principal named  was not found in the tenant. The request body must contain the 'resource' parameter.")
		return
	}
	// A "claims" field (MSAL sends client capabilities) needs no action:
	// this tenant has no conditional access to satisfy.

	now := s.now()
	token, err := s.issueAccessToken(resource, appidacr, now, now.Add(accessTokenTTL))
	if err != nil {
		s.writeEntraError(w, r, http.StatusInternalServerError, "temporarily_unavailable", 90033,
			"A transient error has occurred. Please try again.")
		return
	}
	ttl := int(accessTokenTTL / time.Second)
	if v2 {
		writeJSON(w, http.StatusOK, map[string]any{
			"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": token,
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": strconv.Itoa(ttl), "ext_expires_in": strconv.Itoa(ttl),
		"expires_on": strconv.FormatInt(now.Add(accessTokenTTL).Unix(), 10),
		"not_before": strconv.FormatInt(now.Add(-tokenClockSkew).Unix(), 10),
		"resource":   resource, "access_token": token,
	})
}

// resourceFromScope finds the one "<resource>/.default" scope among the
// space-separated scopes, ignoring the OpenID scopes MSAL always adds.
func resourceFromScope(scope string) (string, bool) {
	resource := ""
	for _, sc := range strings.Fields(scope) {
		switch sc {
		case "openid", "offline_access", "profile", "email":
			continue
		}
		r, ok := strings.CutSuffix(sc, "/.default")
		if !ok || r == "" || resource != "" {
			return "", false
		}
		resource = r
	}
	return resource, resource != ""
}

// issueAccessToken signs an app-only access token with the claims Entra ID
// puts in v1 tokens for a service principal.
func (s *Server) issueAccessToken(resource, appidacr string, issuedAt, expires time.Time) (string, error) {
	return s.tokenKey.sign(map[string]any{
		"aud":      resource,
		"iss":      s.issuer(),
		"iat":      issuedAt.Unix(),
		"nbf":      issuedAt.Add(-tokenClockSkew).Unix(),
		"exp":      expires.Unix(),
		"aio":      randomOpaque(),
		"appid":    s.clientID,
		"appidacr": appidacr,
		"idp":      s.issuer(),
		"idtyp":    "app",
		"oid":      servicePrincipalObjectID,
		"rh":       "0." + randomOpaque() + ".",
		"sub":      servicePrincipalObjectID,
		"tid":      s.tenantID,
		"uti":      randomOpaque()[:22],
		"ver":      "1.0",
		"xms_tcdt": issuedAt.Add(-365 * 24 * time.Hour).Unix(),
	})
}

// IssueFederatedToken returns a workload identity assertion for subject
// (for example "repo:org/repo:ref:refs/heads/main") that the token endpoint
// accepts as a client assertion for this server's client id.
func (s *Server) IssueFederatedToken(subject string) (string, error) {
	return s.issueFederatedToken(subject, federatedAudience)
}

func (s *Server) issueFederatedToken(subject, audience string) (string, error) {
	now := s.now()
	return s.oidcKey.sign(map[string]any{
		"iss": s.oidcIssuer(),
		"sub": subject,
		"aud": audience,
		"iat": now.Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(10 * time.Minute).Unix(),
		"jti": uuid.NewString(),
	})
}

// checkClientAssertion tells a certificate's assertion (iss and sub are the
// client id) from a federated token (iss is an identity provider) and
// verifies it as such. It returns the AADSTS code and message of a failure.
func (s *Server) checkClientAssertion(assertion, clientID, tokenPath string) (int, string) {
	claims := jwt.MapClaims{}
	t, _, err := jwt.NewParser().ParseUnverified(assertion, claims)
	if err != nil {
		return 50027, "Invalid JWT token. The token is malformed."
	}
	if strings.EqualFold(stringClaim(claims, "iss"), clientID) {
		return s.checkCertificateAssertion(assertion, clientID, tokenPath, t.Header)
	}
	return s.checkFederatedAssertion(assertion)
}

// checkFederatedAssertion verifies a client assertion as Entra ID verifies a
// federated credential: the issuer's signature, the exchange audience and
// the lifetime. It returns the AADSTS code and message of a failure.
func (s *Server) checkFederatedAssertion(assertion string) (int, string) {
	claims, err := s.oidcKey.verify(assertion)
	if err != nil {
		return 50013, "Assertion failed signature validation."
	}
	if iss := stringClaim(claims, "iss"); iss != s.oidcIssuer() {
		return 700211, fmt.Sprintf("No matching federated identity record found for presented assertion issuer '%s'.", iss)
	}
	audOK := false
	for _, a := range audienceClaim(claims) {
		audOK = audOK || a == federatedAudience
	}
	if !audOK {
		return 700212, fmt.Sprintf("No matching federated identity record found for presented assertion audience '%s'.", strings.Join(audienceClaim(claims), ","))
	}
	exp, ok := numericClaim(claims, "exp")
	if !ok || !s.now().Before(exp) {
		return 700024, "Client assertion is not within its valid time range."
	}
	return 0, ""
}

// randomOpaque returns an opaque base64url value like Entra's aio and uti.
func randomOpaque() string {
	id := uuid.NewString() + uuid.NewString()
	return base64.RawURLEncoding.EncodeToString([]byte(id))[:48]
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
