package azuresim

import (
	"net/http"
)

// Versions of /metadata/endpoints: from 2022-09-01 on it answers one
// environment object; 2019-05-01 up to then an array of environments; before
// that (2015-01-01, which Azure Stack tooling still asks for) the legacy
// object with galleryEndpoint, graphEndpoint, portalEndpoint and
// authentication.
const (
	metadataArrayBefore  = "2022-09-01"
	metadataLegacyBefore = "2019-05-01"
)

// serveMetadata answers GET /metadata/endpoints, the Azure Stack style cloud
// discovery document that azurerm and the Azure CLI read when given
// ARM_METADATA_HOSTNAME. Resource Manager and the login endpoint are this
// server; the other services keep Azure public cloud values because clients
// refuse a document without them, though nothing here serves them.
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed.")
		return
	}
	doc := s.environment(r)
	switch v := r.URL.Query().Get("api-version"); {
	case v != "" && v < metadataLegacyBefore:
		writeJSON(w, http.StatusOK, map[string]any{
			"galleryEndpoint": doc["gallery"],
			"graphEndpoint":   doc["graph"],
			"portalEndpoint":  doc["portal"],
			"authentication":  doc["authentication"],
		})
	case v != "" && v < metadataArrayBefore:
		writeJSON(w, http.StatusOK, []any{doc})
	default:
		writeJSON(w, http.StatusOK, doc)
	}
}

func (s *Server) environment(r *http.Request) map[string]any {
	base := s.baseURL(r)
	rm := base + "/"
	return map[string]any{
		"name":            "AzureCloud",
		"portal":          "https://portal.azure.com",
		"resourceManager": rm,
		"authentication": map[string]any{
			"loginEndpoint":    rm,
			"audiences":        []string{"https://management.core.windows.net/", rm},
			"tenant":           "common",
			"identityProvider": "AAD",
		},
		"media":                                 "https://rest.media.azure.net",
		"graphAudience":                         "https://graph.windows.net/",
		"graph":                                 "https://graph.windows.net/",
		"batch":                                 "https://batch.core.windows.net/",
		"vmImageAliasDoc":                       "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/master/arm-compute/quickstart-templates/aliases.json",
		"activeDirectoryDataLake":               "https://datalake.azure.net/",
		"sqlManagement":                         "https://management.core.windows.net:8443/",
		"gallery":                               "https://gallery.azure.com/",
		"microsoftGraphResourceId":              "https://graph.microsoft.com/",
		"appServiceResourceId":                  "https://appservice.azure.com",
		"appInsightsResourceId":                 "https://api.applicationinsights.io",
		"appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
		"attestationResourceId":                 "https://attest.azure.net",
		"synapseAnalyticsResourceId":            "https://dev.azuresynapse.net",
		"logAnalyticsResourceId":                "https://api.loganalytics.io",
		"ossrDbmsResourceId":                    "https://ossrdbms-aad.database.windows.net",
		"suffixes": map[string]any{
			"azureDataLakeStoreFileSystem":        "azuredatalakestore.net",
			"acrLoginServer":                      "azurecr.io",
			"sqlServerHostname":                   "database.windows.net",
			"azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
			"keyVaultDns":                         "vault.azure.net",
			"storage":                             "core.windows.net",
			"azureFrontDoorEndpointSuffix":        "azurefd.net",
			"storageSyncEndpointSuffix":           "afs.azure.net",
			"mhsmDns":                             "managedhsm.azure.net",
			"mysqlServerEndpoint":                 "mysql.database.azure.com",
			"postgresqlServerEndpoint":            "postgres.database.azure.com",
			"mariadbServerEndpoint":               "mariadb.database.azure.com",
			"synapseAnalytics":                    "dev.azuresynapse.net",
			"attestationEndpoint":                 "attest.azure.net",
		},
	}
}
