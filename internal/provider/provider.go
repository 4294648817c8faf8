// Package provider is the jit Terraform provider: the schema of its
// configuration, resources, data sources and functions, and their mapping to
// the domain (internal/jit) and the Azure client (internal/azure). Logic that
// is not about Terraform lives in those packages.
package provider

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/function"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

var (
	_ provider.Provider              = (*jitProvider)(nil)
	_ provider.ProviderWithFunctions = (*jitProvider)(nil)
)

// jitProvider is the provider implementation. version and commit identify the
// build in the User-Agent Azure sees.
type jitProvider struct {
	version string
	commit  string

	// getenv reads the ARM_* fallbacks; tests replace it so they never depend
	// on the environment of the machine running them.
	getenv func(string) string

	// clock tells grant expiry; tests replace it to move time.
	clock jit.Clock
}

// New returns a constructor of the provider, as providerserver.Serve expects.
func New(version, commit string) func() provider.Provider {
	return func() provider.Provider {
		// The clock is the system's unless the testing hook
		// JIT_TEST_CLOCK_OFFSET_FILE is set (see jit.ClockFromEnv).
		return &jitProvider{version: version, commit: commit, getenv: os.Getenv, clock: jit.ClockFromEnv(os.Getenv)}
	}
}

// providerModel is the provider block. Every attribute falls back to the
// environment variable the azurerm provider reads, so a shell or CI job set up
// for azurerm needs nothing new.
type providerModel struct {
	SubscriptionID                 types.String `tfsdk:"subscription_id"`
	TenantID                       types.String `tfsdk:"tenant_id"`
	AuxiliaryTenantIDs             types.List   `tfsdk:"auxiliary_tenant_ids"`
	ClientID                       types.String `tfsdk:"client_id"`
	ClientIDFilePath               types.String `tfsdk:"client_id_file_path"`
	ClientSecret                   types.String `tfsdk:"client_secret"`
	ClientSecretFilePath           types.String `tfsdk:"client_secret_file_path"`
	ClientCertificate              types.String `tfsdk:"client_certificate"`
	ClientCertificatePath          types.String `tfsdk:"client_certificate_path"`
	ClientCertificatePassword      types.String `tfsdk:"client_certificate_password"`
	UseOIDC                        types.Bool   `tfsdk:"use_oidc"`
	OIDCToken                      types.String `tfsdk:"oidc_token"`
	OIDCTokenFilePath              types.String `tfsdk:"oidc_token_file_path"`
	OIDCRequestURL                 types.String `tfsdk:"oidc_request_url"`
	OIDCRequestToken               types.String `tfsdk:"oidc_request_token"`
	ADOPipelineServiceConnectionID types.String `tfsdk:"ado_pipeline_service_connection_id"`
	UseAKSWorkloadIdentity         types.Bool   `tfsdk:"use_aks_workload_identity"`
	UseMSI                         types.Bool   `tfsdk:"use_msi"`
	MSIEndpoint                    types.String `tfsdk:"msi_endpoint"`
	MSIAPIVersion                  types.String `tfsdk:"msi_api_version"`
	UseCLI                         types.Bool   `tfsdk:"use_cli"`
	Environment                    types.String `tfsdk:"environment"`
	MetadataHost                   types.String `tfsdk:"metadata_host"`
	AuditLogPath                   types.String `tfsdk:"audit_log_path"`
}

// providerData is what Configure hands to resources and data sources.
type providerData struct {
	client *azure.Client
	// rules reads each NSG at most once per Terraform run (one provider
	// process), however many resources ask.
	rules *cachedRules
	clock jit.Clock
	// audit receives one event per grant opened, closed, refused or found
	// drifted.
	audit audit.Sink
	// approval is the reviewed change this run applies, from the
	// pipeline's environment (JIT_APPROVED_BY, ...), named in every event.
	approval audit.Approval
}

func (p *jitProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "jit"
	resp.Version = p.version
}

func (p *jitProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Just-in-time network access to Azure virtual machines, as reviewed Terraform. " +
			"Authentication and cloud selection follow the `azurerm` provider: every argument may instead be set " +
			"through the `ARM_*` environment variable named in its description.",
		Attributes: map[string]schema.Attribute{
			"subscription_id": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "The subscription used for requests that do not name one in a resource id. Environment: `ARM_SUBSCRIPTION_ID`.",
			},
			"tenant_id": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "The Microsoft Entra tenant to authenticate against. Environment: `ARM_TENANT_ID`.",
			},
			"auxiliary_tenant_ids": schema.ListAttribute{
				ElementType: types.StringType,
				Optional:    true,
				MarkdownDescription: "Not supported: azurerm's auxiliary tenants for cross-tenant references. This provider writes " +
					"only to NSGs its credential's own tenant can reach, so setting it (or `ARM_AUXILIARY_TENANT_IDS`) is an error rather than ignored.",
			},
			"client_id": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "The client (application) id of the service principal or user-assigned managed identity. Environment: `ARM_CLIENT_ID`.",
			},
			"client_id_file_path": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "A file holding the client id; must agree with `client_id` when both are set. Environment: `ARM_CLIENT_ID_FILE_PATH`.",
			},
			"client_secret": schema.StringAttribute{
				Optional:            true,
				Sensitive:           true,
				MarkdownDescription: "A client secret of the service principal. Prefer OIDC or a managed identity in CI. Environment: `ARM_CLIENT_SECRET`.",
			},
			"client_secret_file_path": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "A file holding the client secret (for example a mounted Kubernetes secret); must agree with `client_secret` when both are set. Environment: `ARM_CLIENT_SECRET_FILE_PATH`.",
			},
			"client_certificate": schema.StringAttribute{
				Optional:            true,
				Sensitive:           true,
				MarkdownDescription: "A base64-encoded PKCS#12 bundle of the service principal's certificate and private key. Conflicts with `client_certificate_path`. Environment: `ARM_CLIENT_CERTIFICATE`.",
			},
			"client_certificate_path": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "A PKCS#12 (`.pfx`) or PEM file holding the service principal's certificate and private key. " +
					"Environment: `ARM_CLIENT_CERTIFICATE_PATH`.",
			},
			"client_certificate_password": schema.StringAttribute{
				Optional:            true,
				Sensitive:           true,
				MarkdownDescription: "The password of the PKCS#12 bundle, if it is encrypted. Environment: `ARM_CLIENT_CERTIFICATE_PASSWORD`.",
			},
			"use_oidc": schema.BoolAttribute{
				Optional:            true,
				MarkdownDescription: "Authenticate with an OpenID Connect token federated to the service principal (workload identity federation). Environment: `ARM_USE_OIDC`.",
			},
			"oidc_token": schema.StringAttribute{
				Optional:            true,
				Sensitive:           true,
				MarkdownDescription: "The OIDC token itself. Environment: `ARM_OIDC_TOKEN`.",
			},
			"oidc_token_file_path": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "A file holding the OIDC token, read again whenever a new access token is needed (it may rotate). Environment: `ARM_OIDC_TOKEN_FILE_PATH`.",
			},
			"oidc_request_url": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "The URL to request an OIDC token from, as GitHub Actions and Azure DevOps provide. " +
					"Environment: `ARM_OIDC_REQUEST_URL`, `ACTIONS_ID_TOKEN_REQUEST_URL` or `SYSTEM_OIDCREQUESTURI`.",
			},
			"oidc_request_token": schema.StringAttribute{
				Optional:  true,
				Sensitive: true,
				MarkdownDescription: "The bearer token for `oidc_request_url`. " +
					"Environment: `ARM_OIDC_REQUEST_TOKEN`, `ACTIONS_ID_TOKEN_REQUEST_TOKEN` or `SYSTEM_ACCESSTOKEN`.",
			},
			"ado_pipeline_service_connection_id": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "The id of the Azure DevOps service connection to request the OIDC token for; with it, " +
					"`oidc_request_url` is asked as Azure DevOps expects. Environment: `ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID` or `ARM_OIDC_AZURE_SERVICE_CONNECTION_ID`.",
			},
			"use_aks_workload_identity": schema.BoolAttribute{
				Optional: true,
				MarkdownDescription: "Authenticate with AKS workload identity: the tenant, client id and token file come from " +
					"`AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE`, which the webhook injects. Environment: `ARM_USE_AKS_WORKLOAD_IDENTITY`.",
			},
			"use_msi": schema.BoolAttribute{
				Optional:            true,
				MarkdownDescription: "Authenticate with the managed identity of the machine, container or job running Terraform. Environment: `ARM_USE_MSI`.",
			},
			"msi_endpoint": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "A managed identity token endpoint to use instead of the one detected (IMDS, App Service). Plain `http` only to " +
					"this machine or a link-local address. Environment: `ARM_MSI_ENDPOINT`.",
			},
			"msi_api_version": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "The api-version asked of `msi_endpoint` (of IMDS when that is unset, as azurerm does): `2018-02-01` (IMDS, the default) or `2019-08-01` (App Service, Container Apps). Environment: `ARM_MSI_API_VERSION`.",
			},
			"use_cli": schema.BoolAttribute{
				Optional:            true,
				MarkdownDescription: "Authenticate with the signed-in Azure CLI when no other method applies. Defaults to `true`. Environment: `ARM_USE_CLI`.",
			},
			"environment": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "The Azure cloud: `public` (default; also `global`), `usgovernment` (`usgovernmentl4`), `usgovernmentl5` (`dod`), " +
					"`china`, or `canary`, as azurerm v4 accepts. Environment: `ARM_ENVIRONMENT`.",
			},
			"audit_log_path": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "A file to append audit events to, one JSON object per line (the same schema `jitd` writes): every " +
					"grant opened, closed, refused or found expired or revoked. Events are also logged through Terraform's logs. " +
					"Environment: `JIT_AUDIT_LOG_PATH`.",
			},
			"metadata_host": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "A host name serving Azure's cloud metadata (`https://<host>/metadata/endpoints`), for Azure Stack " +
					"and other custom clouds; the endpoints found there are used instead of `environment`'s. Environment: `ARM_METADATA_HOSTNAME`.",
			},
		},
	}
}

func (p *jitProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var model providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &model)...)
	if resp.Diagnostics.HasError() {
		return
	}

	cfg, err := azure.ConfigFromEnv(p.getenv)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Azure Environment Variable", err.Error())
		return
	}
	overlayConfig(&cfg, model, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := cfg.Validate(); err != nil {
		addConfigErrors(&resp.Diagnostics, err)
		return
	}
	for _, w := range cfg.Warnings() {
		resp.Diagnostics.AddWarning("Provider Setting Has No Effect", w)
	}

	ctx = tflog.SetField(ctx, "subscription_id", cfg.SubscriptionID)
	tflog.Debug(ctx, "Configuring Azure client", map[string]any{
		"environment":   cfg.Environment,
		"metadata_host": cfg.MetadataHost,
		"auth_method":   cfg.AuthMethod(),
	})

	client, err := azure.NewClient(ctx, cfg, azure.ClientOptions{
		UserAgent: fmt.Sprintf("terraform-provider-jit/%s terraform/%s", p.version, req.TerraformVersion),
	})
	if err != nil {
		resp.Diagnostics.AddError("Unable to Create Azure Client",
			"The provider could not set up its connection to Azure from its configuration.\n\n"+
				"Check `environment` / `metadata_host` and the credentials (or their ARM_* environment variables); "+
				"the authentication guide says which method wins when several are set.\n\n"+
				"Original Error: "+err.Error())
		return
	}
	cloud := client.Cloud()
	tflog.Info(ctx, "Configured Azure client", map[string]any{
		"cloud":            cloud.Name,
		"resource_manager": cloud.ResourceManagerEndpoint,
	})

	clock := p.clock
	if clock == nil {
		clock = jit.SystemClock{}
	}
	var sink audit.Sink = audit.Discard{}
	auditPath := p.getenv("JIT_AUDIT_LOG_PATH")
	if !model.AuditLogPath.IsNull() {
		auditPath = model.AuditLogPath.ValueString()
	}
	if auditPath != "" {
		file, err := audit.OpenFile(auditPath)
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("audit_log_path"), "Unable to Open Audit Log",
				fmt.Sprintf("The audit log %q cannot be appended to: %s. Fix the path or its permissions; "+
					"grants are never opened without an audit trail.", auditPath, err))
			return
		}
		sink = file
	}
	// Only the environment says who approved: the configuration and the
	// request are written by the requester.
	approval, err := audit.ApprovalFromEnv(p.getenv)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Approval Environment",
			"The approval variables set by the deployment pipeline cannot be recorded in the audit log, so the provider "+
				"changes nothing. Fix the step that sets them (see the audit events guide), or unset them.\n\n"+
				"Original Error: "+err.Error())
		return
	}
	data := &providerData{client: client, rules: newCachedRules(client), clock: clock,
		audit: sink, approval: approval}
	resp.DataSourceData = data
	resp.ResourceData = data
}

// overlayConfig lets every attribute set in the provider block win over its
// environment variable. An unknown value (from a resource not yet created)
// cannot configure a connection, so it is an error on that attribute.
func overlayConfig(cfg *azure.Config, m providerModel, diags *diag.Diagnostics) {
	str := func(name string, v types.String, dst *string) {
		switch {
		case v.IsUnknown():
			diags.AddAttributeError(path.Root(name), "Unknown Provider Configuration Value",
				fmt.Sprintf("The provider cannot connect to Azure while %q is unknown. Set it to a value known at plan time, "+
					"or leave it unset and use its environment variable.", name))
		case !v.IsNull():
			*dst = v.ValueString()
		}
	}
	boolean := func(name string, v types.Bool, dst *bool) {
		switch {
		case v.IsUnknown():
			diags.AddAttributeError(path.Root(name), "Unknown Provider Configuration Value",
				fmt.Sprintf("The provider cannot connect to Azure while %q is unknown.", name))
		case !v.IsNull():
			*dst = v.ValueBool()
		}
	}
	str("subscription_id", m.SubscriptionID, &cfg.SubscriptionID)
	str("tenant_id", m.TenantID, &cfg.TenantID)
	str("client_id", m.ClientID, &cfg.ClientID)
	str("client_id_file_path", m.ClientIDFilePath, &cfg.ClientIDFilePath)
	str("client_secret", m.ClientSecret, &cfg.ClientSecret)
	str("client_secret_file_path", m.ClientSecretFilePath, &cfg.ClientSecretFilePath)
	str("client_certificate", m.ClientCertificate, &cfg.ClientCertificate)
	str("client_certificate_path", m.ClientCertificatePath, &cfg.ClientCertificatePath)
	str("client_certificate_password", m.ClientCertificatePassword, &cfg.ClientCertificatePassword)
	boolean("use_oidc", m.UseOIDC, &cfg.UseOIDC)
	str("oidc_token", m.OIDCToken, &cfg.OIDCToken)
	str("oidc_token_file_path", m.OIDCTokenFilePath, &cfg.OIDCTokenFilePath)
	str("oidc_request_url", m.OIDCRequestURL, &cfg.OIDCRequestURL)
	str("oidc_request_token", m.OIDCRequestToken, &cfg.OIDCRequestToken)
	str("ado_pipeline_service_connection_id", m.ADOPipelineServiceConnectionID, &cfg.ADOPipelineServiceConnectionID)
	boolean("use_aks_workload_identity", m.UseAKSWorkloadIdentity, &cfg.UseAKSWorkloadIdentity)
	boolean("use_msi", m.UseMSI, &cfg.UseMSI)
	str("msi_endpoint", m.MSIEndpoint, &cfg.MSIEndpoint)
	str("msi_api_version", m.MSIAPIVersion, &cfg.MSIAPIVersion)
	boolean("use_cli", m.UseCLI, &cfg.UseCLI)
	str("environment", m.Environment, &cfg.Environment)
	str("metadata_host", m.MetadataHost, &cfg.MetadataHost)
	switch {
	case m.AuxiliaryTenantIDs.IsUnknown():
		diags.AddAttributeError(path.Root("auxiliary_tenant_ids"), "Unknown Provider Configuration Value",
			"The provider cannot connect to Azure while \"auxiliary_tenant_ids\" is unknown.")
	case !m.AuxiliaryTenantIDs.IsNull() && len(m.AuxiliaryTenantIDs.Elements()) > 0:
		// Any value is refused by Validate, which names the setting.
		cfg.AuxiliaryTenantIDs = m.AuxiliaryTenantIDs.String()
	}
}

// addConfigErrors turns the configuration's validation errors into one
// diagnostic per attribute, each saying which argument or variable to set.
func addConfigErrors(diags *diag.Diagnostics, err error) {
	for _, problem := range unjoin(err) {
		var ce *azure.ConfigError
		if errors.As(problem, &ce) && ce.Field != "" {
			diags.AddAttributeError(path.Root(ce.Field), "Invalid Provider Configuration", configErrorDetail(ce))
			continue
		}
		diags.AddError("Invalid Provider Configuration", problem.Error())
	}
}

func configErrorDetail(ce *azure.ConfigError) string {
	detail := ce.Message
	if ce.EnvVar != "" {
		detail += fmt.Sprintf("\n\nSet %q in the provider block or the environment variable %s.", ce.Field, ce.EnvVar)
	}
	return detail
}

func (p *jitProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		newPolicyResource,
		newGrantResource,
	}
}

func (p *jitProvider) Functions(context.Context) []func() function.Function {
	return []func() function.Function{
		newCIDRContainsFunction,
		newDurationSecondsFunction,
		newPolicyIDFunction,
	}
}

func (p *jitProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		newClientConfigDataSource,
		newNetworkSecurityGroupDataSource,
		newNetworkInterfacesDataSource,
		newAccessGrantsDataSource,
	}
}
