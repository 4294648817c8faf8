package azuresim

import (
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serveSim answers the simulator's own endpoints under /_sim/: control and
// observation, and the token sources of credential kinds other than client
// secrets (managed identity, GitHub Actions OIDC).
func (s *Server) serveSim(w http.ResponseWriter, r *http.Request) string {
	path := strings.TrimSuffix(strings.ToLower(r.URL.Path), "/")
	switch {
	case path == "/_sim/counters" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Counters())
	case (path == "/_sim/counters/reset" && r.Method == http.MethodPost) || (path == "/_sim/counters" && r.Method == http.MethodDelete):
		s.ResetCounters()
		w.WriteHeader(http.StatusNoContent)
	case path == "/_sim/events" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"events": s.Events()})
	case path == "/_sim/flow/verify" && r.Method == http.MethodPost:
		s.serveVerifyFlow(w, r)
	case path == "/_sim/flow/establish" && r.Method == http.MethodPost:
		s.serveEstablishFlow(w, r)
	case connectionID(path) != "":
		s.serveConnection(w, r, connectionID(path))
	case path == "/_sim/admin-rules":
		s.serveAdminRulesControl(w, r)
	case path == "/_sim/config":
		s.serveConfig(w, r)
	case path == "/_sim/msi/token":
		s.serveManagedIdentityToken(w, r)
		return "msi"
	case path == "/_sim/github/idtoken":
		s.serveGitHubIDToken(w, r)
		return "github-oidc"
	case path == adoOIDCPath, path == "/_sim/certificates", path == "/_sim/federated-token", path == "/_sim/identity":
		return s.serveIdentity(w, r, path)
	case path == "/_sim/oidc/.well-known/openid-configuration":
		base := s.baseURL(r) + "/_sim/oidc"
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer": s.oidcIssuer(), "jwks_uri": base + "/keys",
			"subject_types_supported": []string{"public"}, "response_types_supported": []string{"id_token"},
			"id_token_signing_alg_values_supported": []string{"RS256"}, "claims_supported": []string{"sub", "aud", "iss", "exp", "iat", "nbf", "jti"},
		})
	case path == "/_sim/oidc/keys":
		writeJSON(w, http.StatusOK, map[string]any{"keys": []any{s.oidcKey.jwk("")}})
	default:
		writeARMError(w, http.StatusNotFound, "NotFound", "No such simulator endpoint: "+r.Method+" "+r.URL.Path)
	}
	return "sim"
}

func (s *Server) serveVerifyFlow(w http.ResponseWriter, r *http.Request) {
	var f Flow
	if !readBody(w, r, &f) {
		return
	}
	v, err := s.VerifyFlow(f)
	switch {
	case errorsIsUnknown(err):
		writeARMError(w, http.StatusNotFound, "NotFound", err.Error())
	case err != nil:
		writeARMError(w, http.StatusBadRequest, "InvalidFlow", err.Error())
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

// simConfig is the runtime-adjustable part of the options.
type simConfig struct {
	WriteLatency string   `json:"writeLatency"` // a Go duration
	FaultRate    *float64 `json:"faultRate,omitempty"`
	BusyMode     string   `json:"busyMode,omitempty"` // BusyQueue or BusyRefuse
	GraphLag     string   `json:"graphLag,omitempty"` // a Go duration (Options.GraphLag)
}

// serveConfig shows (GET) and changes (PUT/PATCH/POST, fields optional)
// the write latency, the fault rate, the busy mode and Resource Graph's lag.
func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		var c simConfig
		if !readBody(w, r, &c) {
			return
		}
		if c.WriteLatency != "" {
			d, err := time.ParseDuration(c.WriteLatency)
			if err != nil || d < 0 {
				writeARMError(w, http.StatusBadRequest, "InvalidConfig", "writeLatency must be a non-negative Go duration such as \"250ms\".")
				return
			}
			s.SetWriteLatency(d)
		}
		if c.FaultRate != nil {
			if *c.FaultRate < 0 || *c.FaultRate > 1 {
				writeARMError(w, http.StatusBadRequest, "InvalidConfig", "faultRate must be within [0, 1].")
				return
			}
			s.SetFaultRate(*c.FaultRate)
		}
		if c.GraphLag != "" {
			d, err := time.ParseDuration(c.GraphLag)
			if err != nil || d < 0 {
				writeARMError(w, http.StatusBadRequest, "InvalidConfig", "graphLag must be a non-negative Go duration such as \"30s\".")
				return
			}
			s.mu.Lock()
			s.graph.lag = d
			s.mu.Unlock()
		}
		if c.BusyMode != "" {
			if err := s.SetBusyMode(c.BusyMode); err != nil {
				writeARMError(w, http.StatusBadRequest, "InvalidConfig", `busyMode must be "queue" or "refuse".`)
				return
			}
		}
	}
	s.mu.Lock()
	rate := s.faultRate
	c := simConfig{WriteLatency: s.writeLatency.String(), FaultRate: &rate, BusyMode: s.busyMode, GraphLag: s.graph.lag.String()}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, c)
}

// serveManagedIdentityToken is an App Service style managed identity
// endpoint (IDENTITY_ENDPOINT): GET ?api-version=2019-08-01&resource=… with
// the X-IDENTITY-HEADER secret.
func (s *Server) serveManagedIdentityToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"statusCode": 405, "message": "Only GET is supported."})
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(s.identityHeader)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER."})
		return
	}
	q := r.URL.Query()
	resource := strings.TrimSuffix(q.Get("resource"), "/.default")
	if q.Get("api-version") == "" || resource == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "The api-version and resource query parameters are required."})
		return
	}
	if id := q.Get("client_id"); id != "" && !strings.EqualFold(id, s.clientID) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "No managed identity with client_id " + id + " is assigned to this resource."})
		return
	}
	now := s.now()
	expires := now.Add(accessTokenTTL)
	token, err := s.issueAccessToken(resource, "2", now, expires)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"statusCode": 500, "message": "Token issuance failed."})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": token,
		"expires_on":   strconv.FormatInt(expires.Unix(), 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    s.clientID,
	})
}

// serveGitHubIDToken mimics GitHub Actions' ACTIONS_ID_TOKEN_REQUEST_URL:
// GET ?audience=… with the request token as a bearer token answers
// {"value":"<jwt>"}, a federated assertion the token endpoint accepts.
func (s *Server) serveGitHubIDToken(w http.ResponseWriter, r *http.Request) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(token), []byte(s.githubRequestToken)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials"})
		return
	}
	aud := r.URL.Query().Get("audience")
	if aud == "" {
		aud = federatedAudience
	}
	jwt, err := s.issueFederatedToken("repo:jitaccess/infrastructure:ref:refs/heads/main", aud)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": "token issuance failed"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"value": jwt})
}
