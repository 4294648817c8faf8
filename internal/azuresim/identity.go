package azuresim

import (
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Paths of the token sources this file serves besides Entra ID's own.
const (
	// imdsTokenPath is the Azure Instance Metadata Service's managed
	// identity endpoint, as on a VM (there at http://169.254.169.254).
	imdsTokenPath = "/metadata/identity/oauth2/token"
	// adoOIDCPath stands for Azure DevOps' SYSTEM_OIDCREQUESTURI
	// (https://dev.azure.com/{org}/{project}/_apis/distributedtask/hubs/build/plans/{plan}/jobs/{job}/oidctoken).
	adoOIDCPath = "/_sim/ado/oidctoken"
)

// identityState is what the token endpoint knows about the application
// besides its secret: the certificates registered for it, and the Azure
// DevOps pipeline whose service connection federates to it. It is created
// lazily, under its own lock.
type identityState struct {
	mu    sync.Mutex
	certs []*x509.Certificate
	ado   *adoPipeline
}

// adoPipeline is one Azure DevOps pipeline job: its SYSTEM_ACCESSTOKEN and
// the service connection that federates to the application.
type adoPipeline struct {
	accessToken         string
	serviceConnectionID string
}

// RegisterClientCertificate registers cert as a credential of the
// application, as uploading it to the app registration does: the token
// endpoint then accepts client assertions signed by its key.
func (s *Server) RegisterClientCertificate(cert *x509.Certificate) {
	s.identity.mu.Lock()
	defer s.identity.mu.Unlock()
	s.identity.certs = append(s.identity.certs, cert)
}

// NewClientCertificate makes a self-signed certificate with an RSA key,
// registers it for the application and returns both in PEM (a
// "CERTIFICATE" and a "PRIVATE KEY" block).
func (s *Server) NewClientCertificate() (certPEM, keyPEM []byte, err error) {
	key, cert, err := newSelfSignedCertificate("jit-provider-client", x509.KeyUsageDigitalSignature)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	s.RegisterClientCertificate(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// registeredCertificate finds a registered certificate by the thumbprint in
// a client assertion's header: x5t#S256 (SHA-256, what MSAL sends) or x5t
// (SHA-1), in standard or URL base64.
func (s *Server) registeredCertificate(header map[string]any) *x509.Certificate {
	s.identity.mu.Lock()
	defer s.identity.mu.Unlock()
	for _, c := range s.identity.certs {
		s256 := sha256.Sum256(c.Raw)
		s1 := sha1.Sum(c.Raw) //nolint:gosec // thumbprint, not a security decision
		for name, sum := range map[string][]byte{"x5t#S256": s256[:], "x5t": s1[:]} {
			v, _ := header[name].(string)
			if v != "" && (v == base64.StdEncoding.EncodeToString(sum) || v == base64.RawURLEncoding.EncodeToString(sum) ||
				v == base64.URLEncoding.EncodeToString(sum)) {
				return c
			}
		}
	}
	return nil
}

// AzureDevOpsOIDCRequest returns the values of SYSTEM_OIDCREQUESTURI,
// SYSTEM_ACCESSTOKEN and the service connection id of an Azure DevOps
// pipeline whose OIDC tokens the token endpoint accepts as client
// assertions.
func (s *Server) AzureDevOpsOIDCRequest() (url, accessToken, serviceConnectionID string) {
	p := s.adoPipeline()
	return s.url + adoOIDCPath, p.accessToken, p.serviceConnectionID
}

func (s *Server) adoPipeline() *adoPipeline {
	s.identity.mu.Lock()
	defer s.identity.mu.Unlock()
	if s.identity.ado == nil {
		tok, err := randomHex(24)
		if err != nil {
			tok = uuid.NewString() + uuid.NewString() // crypto/rand does not fail; keep a random value regardless
		}
		s.identity.ado = &adoPipeline{accessToken: tok, serviceConnectionID: uuid.NewString()}
	}
	return s.identity.ado
}

// IMDSEndpoint is the URL of this server's Instance Metadata Service style
// managed identity endpoint, for ARM_MSI_ENDPOINT.
func (s *Server) IMDSEndpoint() string { return s.url + imdsTokenPath }

// serveIdentity answers the simulator's identity endpoints under /_sim/.
func (s *Server) serveIdentity(w http.ResponseWriter, r *http.Request, path string) string {
	switch path {
	case adoOIDCPath:
		s.serveADOOIDCToken(w, r)
		return "ado-oidc"
	case "/_sim/certificates":
		s.serveRegisterCertificate(w, r)
	case "/_sim/federated-token":
		s.serveIssueFederatedToken(w, r)
	case "/_sim/identity":
		s.serveIdentityValues(w, r)
	}
	return "sim"
}

// serveADOOIDCToken mimics Azure DevOps' OIDC token request: POST
// ?api-version=7.1&serviceConnectionId=… with SYSTEM_ACCESSTOKEN as a
// bearer token answers {"oidcToken":"<jwt>"}, a federated assertion for the
// service connection that the token endpoint accepts.
func (s *Server) serveADOOIDCToken(w http.ResponseWriter, r *http.Request) {
	p := s.adoPipeline()
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, adoError("The requested resource does not support http method '"+r.Method+"'."))
		return
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(token), []byte(p.accessToken)) != 1 {
		writeJSON(w, http.StatusUnauthorized, adoError("TF400813: The user is not authorized to access this resource."))
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		writeJSON(w, http.StatusBadRequest, adoError("VSS0001: The api-version query parameter is required."))
		return
	}
	id := q.Get("serviceConnectionId")
	if !strings.EqualFold(id, p.serviceConnectionID) {
		writeJSON(w, http.StatusNotFound, adoError(fmt.Sprintf("Service connection %q not found or the pipeline is not authorized to use it.", id)))
		return
	}
	jwt, err := s.issueFederatedToken("sc://jitaccess/infrastructure/"+p.serviceConnectionID, federatedAudience)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adoError("token issuance failed"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"oidcToken": jwt})
}

func adoError(msg string) map[string]any {
	return map[string]any{"$id": "1", "innerException": nil, "message": msg, "typeName": "Microsoft.VisualStudio.Services.WebApi.VssServiceException"}
}

// serveRegisterCertificate registers the PEM certificates of a POST body
// (for a local Azure run as a process, where tests cannot call
// RegisterClientCertificate).
func (s *Server) serveRegisterCertificate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "POST a PEM certificate.")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeARMError(w, http.StatusBadRequest, "InvalidCertificate", "The body could not be read.")
		return
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(body); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			writeARMError(w, http.StatusBadRequest, "InvalidCertificate", "A CERTIFICATE block does not parse: "+err.Error())
			return
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		writeARMError(w, http.StatusBadRequest, "InvalidCertificate", "The body holds no PEM CERTIFICATE block.")
		return
	}
	for _, c := range certs {
		s.RegisterClientCertificate(c)
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveIdentityValues answers GET with the values a client of a local
// Azure run as a process needs for each credential kind: they are the
// simulator's own and protect nothing real.
func (s *Server) serveIdentityValues(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "GET only.")
		return
	}
	adoURL, adoToken, adoConnection := s.AzureDevOpsOIDCRequest()
	ghURL, ghToken := s.GitHubIDTokenRequest()
	msi, header := s.ManagedIdentityEndpoint()
	writeJSON(w, http.StatusOK, map[string]string{
		"SYSTEM_OIDCREQUESTURI":                adoURL,
		"SYSTEM_ACCESSTOKEN":                   adoToken,
		"ARM_OIDC_AZURE_SERVICE_CONNECTION_ID": adoConnection,
		"ACTIONS_ID_TOKEN_REQUEST_URL":         ghURL,
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN":       ghToken,
		"IDENTITY_ENDPOINT":                    msi,
		"IDENTITY_HEADER":                      header,
		"IMDS_ENDPOINT":                        s.IMDSEndpoint(),
	})
}

// serveIssueFederatedToken answers POST ?subject=… with {"token": …}, a
// federated assertion such as AKS projects into AZURE_FEDERATED_TOKEN_FILE.
func (s *Server) serveIssueFederatedToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "POST ?subject=….")
		return
	}
	subject := r.URL.Query().Get("subject")
	if subject == "" {
		subject = "system:serviceaccount:jit:jitd"
	}
	tok, err := s.IssueFederatedToken(subject)
	if err != nil {
		writeARMError(w, http.StatusInternalServerError, "InternalError", "token issuance failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// serveIMDSToken is the Instance Metadata Service's managed identity
// endpoint: GET ?api-version=…&resource=…[&client_id=…] with "Metadata:
// true", answering the token with its times as strings, as IMDS does.
func (s *Server) serveIMDSToken(w http.ResponseWriter, r *http.Request) {
	imdsError := func(status int, code, desc string) {
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodGet {
		imdsError(http.StatusMethodNotAllowed, "invalid_request", "Only GET is supported.")
		return
	}
	if !strings.EqualFold(r.Header.Get("Metadata"), "true") {
		imdsError(http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		imdsError(http.StatusBadRequest, "invalid_request", "Required query variable 'api-version' is missing")
		return
	}
	resource := strings.TrimSuffix(q.Get("resource"), "/.default")
	if resource == "" {
		imdsError(http.StatusBadRequest, "invalid_request", "Required query variable 'resource' is missing")
		return
	}
	for _, name := range []string{"client_id", "clientid"} {
		if id := q.Get(name); id != "" && !strings.EqualFold(id, s.clientID) {
			imdsError(http.StatusBadRequest, "invalid_request", "Identity not found")
			return
		}
	}
	now := s.now()
	expires := now.Add(accessTokenTTL)
	token, err := s.issueAccessToken(resource, "2", now, expires)
	if err != nil {
		imdsError(http.StatusInternalServerError, "server_error", "Token issuance failed.")
		return
	}
	ttl := strconv.Itoa(int(accessTokenTTL / time.Second))
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token":   token,
		"client_id":      s.clientID,
		"expires_in":     ttl,
		"expires_on":     strconv.FormatInt(expires.Unix(), 10),
		"ext_expires_in": ttl,
		"not_before":     strconv.FormatInt(now.Add(-tokenClockSkew).Unix(), 10),
		"resource":       resource,
		"token_type":     "Bearer",
	})
}

// checkCertificateAssertion verifies a client assertion signed with a
// certificate, as Entra ID does: the certificate is registered for the
// application, the signature (RS256 or PS256) holds, iss and sub are the
// client id, aud is the token endpoint it was sent to, and it is within
// its lifetime. It returns the AADSTS code and message of a failure.
func (s *Server) checkCertificateAssertion(assertion, clientID, tokenPath string, header map[string]any) (int, string) {
	cert := s.registeredCertificate(header)
	if cert == nil {
		return 700027, "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found.]"
	}
	claims, err := verifyJWT(assertion, cert.PublicKey, "RS256", "PS256")
	if err != nil {
		return 700027, "Client assertion failed signature validation."
	}
	if iss, sub := stringClaim(claims, "iss"), stringClaim(claims, "sub"); !strings.EqualFold(iss, clientID) || !strings.EqualFold(sub, clientID) {
		return 700021, fmt.Sprintf("Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials . (iss %q, sub %q)", iss, sub)
	}
	audOK := false
	for _, a := range audienceClaim(claims) {
		audOK = audOK || s.isTokenEndpoint(a, tokenPath)
	}
	if !audOK {
		return 700212, fmt.Sprintf("The audience of the client assertion '%s' is not this token endpoint.", strings.Join(audienceClaim(claims), ","))
	}
	now := s.now()
	exp, okExp := numericClaim(claims, "exp")
	nbf, okNbf := numericClaim(claims, "nbf")
	if !okExp || !now.Before(exp) || (okNbf && now.Add(tokenClockSkew).Before(nbf)) {
		return 700024, "Client assertion is not within its valid time range."
	}
	return 0, ""
}

// isTokenEndpoint reports whether aud names this server's token endpoint at
// path, under any of its host names.
func (s *Server) isTokenEndpoint(aud, path string) bool {
	host, rest, ok := strings.Cut(strings.TrimPrefix(aud, "https://"), "/")
	return ok && strings.HasPrefix(aud, "https://") && s.knownHost(host) && strings.EqualFold("/"+rest, path)
}
