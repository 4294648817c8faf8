package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

var _ datasource.DataSourceWithConfigure = (*clientConfigDataSource)(nil)

func newClientConfigDataSource() datasource.DataSource { return &clientConfigDataSource{} }

// clientConfigDataSource reports who the provider is authenticated as, which
// is also the quickest way to prove the credentials work.
type clientConfigDataSource struct {
	data *providerData
}

type clientConfigModel struct {
	ID             types.String `tfsdk:"id"`
	SubscriptionID types.String `tfsdk:"subscription_id"`
	TenantID       types.String `tfsdk:"tenant_id"`
	ClientID       types.String `tfsdk:"client_id"`
	ObjectID       types.String `tfsdk:"object_id"`
	Environment    types.String `tfsdk:"environment"`
	ResourceMgr    types.String `tfsdk:"resource_manager_endpoint"`
}

func (d *clientConfigDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_client_config"
}

func (d *clientConfigDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The identity and cloud the provider is authenticated against. Reading it acquires an access " +
			"token, so it fails early and clearly when credentials are wrong.",
		Attributes: map[string]schema.Attribute{
			"id":                        schema.StringAttribute{Computed: true, MarkdownDescription: "`<tenant_id>/<object_id>`."},
			"subscription_id":           schema.StringAttribute{Computed: true, MarkdownDescription: "The configured subscription."},
			"tenant_id":                 schema.StringAttribute{Computed: true, MarkdownDescription: "The tenant of the access token."},
			"client_id":                 schema.StringAttribute{Computed: true, MarkdownDescription: "The application (client) id of the access token."},
			"object_id":                 schema.StringAttribute{Computed: true, MarkdownDescription: "The object id of the authenticated principal; grant it roles on the NSGs."},
			"environment":               schema.StringAttribute{Computed: true, MarkdownDescription: "The name of the Azure cloud in use."},
			"resource_manager_endpoint": schema.StringAttribute{Computed: true, MarkdownDescription: "The Azure Resource Manager endpoint in use."},
		},
	}
}

func (d *clientConfigDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.data = configureData(req.ProviderData, &resp.Diagnostics)
}

func (d *clientConfigDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	identity, err := d.data.client.Identity(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Authenticate to Azure", azureErrorDetail("acquire an access token for", "", err))
		return
	}
	cloud := d.data.client.Cloud()
	state := clientConfigModel{
		ID:             types.StringValue(identity.TenantID + "/" + identity.ObjectID),
		SubscriptionID: types.StringValue(d.data.client.SubscriptionID()),
		TenantID:       types.StringValue(identity.TenantID),
		ClientID:       types.StringValue(identity.ClientID),
		ObjectID:       types.StringValue(identity.ObjectID),
		Environment:    types.StringValue(cloud.Name),
		ResourceMgr:    types.StringValue(cloud.ResourceManagerEndpoint),
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}
