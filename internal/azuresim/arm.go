package azuresim

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// armRequest is an ARM request after routing: which resource it names.
type armRequest struct {
	kind string // counter kind and dispatch key
	// lro is true for writes that start a long-running operation.
	lro        bool
	sub, rg    string
	nsg, rule  string
	vnet       string
	subnet     string
	nic        string
	vm         string
	watcher    string
	jitPolicy  string
	provider   string
	location   string
	operation  string
	apiVersion string
	// failLRO is set when fault injection chose to fail this write's
	// long-running operation.
	failLRO bool
}

// parseARMPath classifies an ARM path. Fixed segments match
// case-insensitively, as ARM's do.
func parseARMPath(method, path string) armRequest {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	lower := make([]string, len(seg))
	for i, s := range seg {
		lower[i] = strings.ToLower(s)
	}
	is := func(i int, want string) bool { return i < len(lower) && lower[i] == want }
	n := len(seg)
	if n == 1 && is(0, "subscriptions") {
		return armRequest{kind: "subscription-list"}
	}
	if n == 1 && is(0, "tenants") {
		return armRequest{kind: "tenant-list"}
	}
	if n < 2 || !is(0, "subscriptions") {
		return armRequest{kind: "unknown"}
	}
	q := armRequest{sub: seg[1], kind: "unknown"}
	if parseSecurityPath(&q, seg, lower) {
		return q
	}
	switch {
	case n == 2:
		q.kind = "subscription"
	case n == 3 && is(2, "providers"):
		q.kind = "provider-list"
	case n == 4 && is(2, "providers"):
		q.kind, q.provider = "provider", seg[3]
	case n == 5 && is(2, "providers") && is(4, "register"):
		q.kind, q.provider = "provider-register", seg[3]
	case n == 5 && is(2, "providers") && is(3, "microsoft.network") && is(4, "networksecuritygroups"):
		q.kind = "nsg-list"
	case n == 5 && is(2, "providers") && is(3, "microsoft.network") && is(4, "virtualnetworks"):
		q.kind = "vnet-list"
	case n == 5 && is(2, "providers") && is(3, "microsoft.network") && is(4, "networkwatchers"):
		q.kind = "watcher-list"
	case n == 5 && is(2, "providers") && is(3, "microsoft.network") && is(4, "networkinterfaces"):
		q.kind = "nic-list"
	case n == 8 && is(2, "providers") && is(3, "microsoft.network") && is(4, "locations") && is(6, "operations"):
		q.kind, q.location, q.operation = "operation", seg[5], seg[7]
	case n == 8 && is(2, "providers") && is(3, "microsoft.network") && is(4, "locations") && is(6, "operationresults"):
		q.kind, q.location, q.operation = "operation-result", seg[5], seg[7]
	case n == 3 && is(2, "resourcegroups"):
		q.kind = "resource-group-list"
	case n == 4 && is(2, "resourcegroups"):
		q.kind, q.rg = "resource-group", seg[3]
	case n == 5 && is(2, "resourcegroups") && is(4, "resources"):
		q.kind, q.rg = "resource-group-resources", seg[3]
	case n == 4 && is(2, "operationresults"):
		q.kind, q.operation = "resource-group-deletion", seg[3]
	case n >= 7 && is(2, "resourcegroups") && is(4, "providers") && is(5, "microsoft.network") && is(6, "networksecuritygroups"):
		q.rg = seg[3]
		switch {
		case n == 7:
			q.kind = "nsg-list"
		case n == 8:
			q.kind, q.nsg = "nsg", seg[7]
			q.lro = method == http.MethodPut || method == http.MethodDelete
		case n == 9 && is(8, "securityrules"):
			q.kind, q.nsg = "rule-list", seg[7]
		case n == 10 && is(8, "securityrules"):
			q.kind, q.nsg, q.rule = "rule", seg[7], seg[9]
			q.lro = method == http.MethodPut || method == http.MethodDelete
		case n == 9 && is(8, "defaultsecurityrules"):
			q.kind, q.nsg = "default-rule-list", seg[7]
		case n == 10 && is(8, "defaultsecurityrules"):
			q.kind, q.nsg, q.rule = "default-rule", seg[7], seg[9]
		}
	case n >= 7 && is(2, "resourcegroups") && is(4, "providers") && is(5, "microsoft.network"):
		q.rg = seg[3]
		parseNetworkPath(&q, method, seg, lower)
	case (n == 7 || n == 8) && is(2, "resourcegroups") && is(4, "providers") && is(5, "microsoft.compute") && is(6, "virtualmachines"):
		q.rg, q.kind = seg[3], "vm-list"
		if n == 8 {
			q.kind, q.vm = "vm", seg[7]
		}
	}
	return q
}

var apiVersionPattern = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})(-preview)?$`)

// serveARM authenticates, checks and throttles an ARM request, may inject a
// fault, then dispatches it.
func (s *Server) serveARM(w http.ResponseWriter, r *http.Request) string {
	q := parseARMPath(r.Method, r.URL.Path)
	correlation := r.Header.Get("x-ms-correlation-request-id")
	if correlation == "" {
		correlation = uuid.NewString()
	}
	w.Header().Set("x-ms-request-id", uuid.NewString())
	w.Header().Set("x-ms-correlation-request-id", correlation)
	if !s.authenticate(w, r) {
		return q.kind
	}
	q.apiVersion = r.URL.Query().Get("api-version")
	if !s.checkAPIVersion(w, q) {
		return q.kind
	}
	if q.sub != "" && s.servedSubscription(q.sub) == "" {
		writeARMError(w, http.StatusNotFound, "SubscriptionNotFound", fmt.Sprintf("The subscription '%s' could not be found.", q.sub))
		return q.kind
	}
	q.sub = s.sub(q.sub)
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if write && !s.takeWriteToken(w) {
		return q.kind
	}
	if !write && !s.takeReadToken(w, q.sub) {
		return q.kind
	}
	if s.injectFault(w, &q) {
		return q.kind
	}
	s.dispatchARM(w, r, q)
	return q.kind
}

func (s *Server) dispatchARM(w http.ResponseWriter, r *http.Request, q armRequest) {
	if !s.requireGroup(w, r, q) {
		return
	}
	if s.serveNetwork(w, r, q) || s.serveCompute(w, r, q) || s.serveDefender(w, r, q) {
		return
	}
	m := r.Method
	switch {
	case q.kind == "subscription-list" && m == http.MethodGet:
		s.listSubscriptions(w, r)
	case q.kind == "tenant-list" && m == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"value": []any{map[string]any{
			"id": "/tenants/" + s.tenantID, "tenantId": s.tenantID, "tenantCategory": "Home",
			"displayName": "Local Azure", "defaultDomain": "localazure.onmicrosoft.com",
		}}})
	case q.kind == "subscription" && m == http.MethodGet:
		writeJSON(w, http.StatusOK, s.subscriptionDoc(q.sub))
	case q.kind == "provider-list" && m == http.MethodGet:
		var list []any
		for _, ns := range registeredProviders {
			list = append(list, s.providerDoc(q.sub, ns))
		}
		writeJSON(w, http.StatusOK, map[string]any{"value": list})
	case (q.kind == "provider" && m == http.MethodGet) || (q.kind == "provider-register" && m == http.MethodPost):
		writeJSON(w, http.StatusOK, s.providerDoc(q.sub, q.provider))
	case q.kind == "resource-group-list" && m == http.MethodGet:
		s.listResourceGroups(w, r, q)
	case q.kind == "resource-group":
		s.serveResourceGroup(w, r, q)
	case q.kind == "resource-group-resources" && m == http.MethodGet:
		s.listGroupResources(w, r, q)
	case q.kind == "resource-group-deletion" && m == http.MethodGet:
		s.serveDeletionResult(w, q)
	case q.kind == "nsg-list" && m == http.MethodGet:
		s.listNSGs(w, r, q)
	case q.kind == "nsg" && m == http.MethodGet:
		s.getNSG(w, q)
	case q.kind == "nsg" && m == http.MethodPut:
		s.putNSG(w, r, q)
	case q.kind == "nsg" && m == http.MethodPatch:
		s.patchNSGTags(w, r, q)
	case q.kind == "nsg" && m == http.MethodDelete:
		s.deleteNSG(w, r, q)
	case q.kind == "rule-list" && m == http.MethodGet:
		s.listRules(w, r, q)
	case q.kind == "rule" && m == http.MethodGet:
		s.getRule(w, q)
	case q.kind == "rule" && m == http.MethodPut:
		s.putRule(w, r, q)
	case q.kind == "rule" && m == http.MethodDelete:
		s.deleteRule(w, r, q)
	case q.kind == "default-rule-list" && m == http.MethodGet:
		s.listDefaultRules(w, r, q)
	case q.kind == "default-rule" && m == http.MethodGet:
		s.getDefaultRule(w, q)
	case (q.kind == "operation" || q.kind == "operation-result") && m == http.MethodGet:
		s.serveOperation(w, r, q)
	case q.kind == "unknown":
		writeARMError(w, http.StatusNotFound, "InvalidResourceType",
			fmt.Sprintf("The resource type could not be found for the path '%s' and api version '%s'.", r.URL.Path, q.apiVersion))
	default:
		w.Header().Set("Allow", "GET")
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The HTTP method '%s' is not supported at scope '%s'.", m, r.URL.Path))
	}
}

// checkAPIVersion requires an api-version of the form YYYY-MM-DD(-preview);
// Microsoft.Network accepts every one from 2017 on.
func (s *Server) checkAPIVersion(w http.ResponseWriter, q armRequest) bool {
	if q.apiVersion == "" {
		writeARMError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.")
		return false
	}
	m := apiVersionPattern.FindStringSubmatch(q.apiVersion)
	if m == nil {
		writeARMError(w, http.StatusBadRequest, "InvalidApiVersionParameter",
			fmt.Sprintf("The api-version '%s' is invalid. The supported versions are '%s'.", q.apiVersion, networkAPIVersions))
		return false
	}
	network := strings.HasPrefix(q.kind, "nsg") || strings.HasPrefix(q.kind, "rule") ||
		strings.HasPrefix(q.kind, "default-rule") || strings.HasPrefix(q.kind, "operation") || networkRoutes[q.kind] != nil
	if network && m[1] < "2017" {
		writeARMError(w, http.StatusBadRequest, "NoRegisteredProviderFound",
			fmt.Sprintf("No registered resource provider found for location 'global' and API version '%s' for type 'networkSecurityGroups'. The supported api-versions are '%s'.", q.apiVersion, networkAPIVersions))
		return false
	}
	return true
}

const networkAPIVersions = "2017-03-01, 2018-08-01, 2020-11-01, 2022-07-01, 2023-09-01, 2024-05-01, 2025-01-01, 2025-05-01"

// allowedAudiences are the token audiences public ARM accepts; tokens for
// this server's own Resource Manager URL are accepted too (see audienceOK).
var allowedAudiences = []string{
	"https://management.core.windows.net/", "https://management.core.windows.net",
	"https://management.azure.com/", "https://management.azure.com",
}

// authenticate checks the bearer token as ARM does: signed by this tenant's
// key, issued by this tenant, for Resource Manager, and within its lifetime.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) bool {
	authz := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(authz, " ")
	if authz == "" {
		s.writeAuthError(w, r, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
		return false
	}
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		s.writeAuthError(w, r, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
		return false
	}
	claims, err := s.tokenKey.verify(strings.TrimSpace(token))
	if err != nil {
		s.writeAuthError(w, r, "InvalidAuthenticationToken", "The access token is invalid.")
		return false
	}
	if iss := stringClaim(claims, "iss"); iss != s.issuer() {
		s.writeAuthError(w, r, "InvalidAuthenticationToken", fmt.Sprintf("The access token is from the wrong issuer '%s'. It must match the tenant '%s' associated with this subscription.", iss, s.issuer()))
		return false
	}
	auds := audienceClaim(claims)
	if len(auds) != 1 || !s.audienceOK(auds[0]) {
		s.writeAuthError(w, r, "InvalidAuthenticationToken", fmt.Sprintf("The access token has been obtained for wrong audience or resource '%s'. It should exactly match with one of the allowed audiences '%s'.",
			strings.Join(auds, ","), strings.Join(append(append([]string{}, allowedAudiences...), s.url, s.url+"/"), "','")))
		return false
	}
	now := s.now()
	exp, okExp := numericClaim(claims, "exp")
	nbf, okNbf := numericClaim(claims, "nbf")
	if !okExp || !now.Before(exp) {
		s.writeAuthError(w, r, "InvalidAuthenticationToken", fmt.Sprintf("The access token expiry UTC time '%s' is earlier than current UTC time '%s'.",
			exp.UTC().Format("1/2/2006 3:04:05 PM"), now.UTC().Format("1/2/2006 3:04:05 PM")))
		return false
	}
	if okNbf && now.Add(5*time.Minute).Before(nbf) {
		s.writeAuthError(w, r, "InvalidAuthenticationToken", "The access token is not yet valid.")
		return false
	}
	return true
}

// audienceOK accepts public ARM's audiences and this server's own URL under
// any of its certificate names.
func (s *Server) audienceOK(aud string) bool {
	for _, a := range allowedAudiences {
		if aud == a {
			return true
		}
	}
	u, err := url.Parse(aud)
	return err == nil && u.Scheme == "https" && (u.Path == "" || u.Path == "/") && s.knownHost(u.Host)
}

// writeAuthError answers 401 as ARM does, with a WWW-Authenticate challenge
// that names the authority but carries no claims (no CAE challenge).
func (s *Server) writeAuthError(w http.ResponseWriter, r *http.Request, code, message string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization_uri="%s/%s", error="invalid_token", error_description="%s"`,
		s.baseURL(r), s.tenantID, strings.ReplaceAll(message, `"`, `'`)))
	writeARMError(w, http.StatusUnauthorized, code, message)
}

// writeARMError answers ARM's error shape {"error":{"code","message"}}.
func writeARMError(w http.ResponseWriter, status int, code, message string) {
	writeARMErrorBody(w, status, &armError{Code: code, Message: message})
}

func writeARMErrorBody(w http.ResponseWriter, status int, e *armError) {
	if e.Details == nil {
		e.Details = []armError{}
	}
	writeJSON(w, status, map[string]any{"error": e})
}

// registeredProviders are the namespaces GET /providers lists as
// registered, so that clients which register what they need see nothing to
// do. Any other namespace is reported registered when asked for directly.
var registeredProviders = []string{
	"Microsoft.Network", "Microsoft.Resources", "Microsoft.Compute", "Microsoft.Storage",
	"Microsoft.Authorization", "Microsoft.ManagedIdentity", "Microsoft.KeyVault", "Microsoft.Insights",
}

func (s *Server) providerDoc(sub, namespace string) map[string]any {
	doc := map[string]any{
		"id":                 "/subscriptions/" + sub + "/providers/" + namespace,
		"namespace":          namespace,
		"registrationState":  "Registered",
		"registrationPolicy": "RegistrationRequired",
		"resourceTypes":      []any{},
	}
	if strings.EqualFold(namespace, "Microsoft.Network") {
		doc["namespace"] = "Microsoft.Network"
		doc["resourceTypes"] = []any{
			map[string]any{"resourceType": "networkSecurityGroups", "locations": []string{"West Europe", "North Europe", "East US"}, "apiVersions": strings.Split(networkAPIVersions, ", ")},
			map[string]any{"resourceType": "virtualNetworks", "locations": []string{"West Europe", "North Europe", "East US"}, "apiVersions": strings.Split(networkAPIVersions, ", ")},
			map[string]any{"resourceType": "networkInterfaces", "locations": []string{"West Europe", "North Europe", "East US"}, "apiVersions": strings.Split(networkAPIVersions, ", ")},
			map[string]any{"resourceType": "networkWatchers", "locations": []string{"West Europe", "North Europe", "East US"}, "apiVersions": strings.Split(networkAPIVersions, ", ")},
			map[string]any{"resourceType": "locations/operations", "locations": []string{}, "apiVersions": strings.Split(networkAPIVersions, ", ")},
			map[string]any{"resourceType": "locations/operationResults", "locations": []string{}, "apiVersions": strings.Split(networkAPIVersions, ", ")},
		}
	}
	return doc
}
