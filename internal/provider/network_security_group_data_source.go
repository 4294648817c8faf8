package provider

import (
	"context"
	"sort"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/provider/validators"
)

var _ datasource.DataSourceWithConfigure = (*networkSecurityGroupDataSource)(nil)

func newNetworkSecurityGroupDataSource() datasource.DataSource {
	return &networkSecurityGroupDataSource{}
}

// networkSecurityGroupDataSource shows the security rules of an NSG as Azure
// has them right now, JIT-managed or not: what is really open is on the NSG,
// not in anyone's Terraform state.
type networkSecurityGroupDataSource struct {
	data *providerData
}

type networkSecurityGroupModel struct {
	ID       types.String        `tfsdk:"id"`
	Name     types.String        `tfsdk:"name"`
	Location types.String        `tfsdk:"location"`
	Rules    []securityRuleModel `tfsdk:"security_rules"`
}

type securityRuleModel struct {
	Name                       types.String `tfsdk:"name"`
	Priority                   types.Int64  `tfsdk:"priority"`
	Direction                  types.String `tfsdk:"direction"`
	Access                     types.String `tfsdk:"access"`
	Protocol                   types.String `tfsdk:"protocol"`
	SourceAddressPrefixes      types.List   `tfsdk:"source_address_prefixes"`
	SourcePortRanges           types.List   `tfsdk:"source_port_ranges"`
	DestinationAddressPrefixes types.List   `tfsdk:"destination_address_prefixes"`
	DestinationPortRanges      types.List   `tfsdk:"destination_port_ranges"`
	Description                types.String `tfsdk:"description"`
	JITManaged                 types.Bool   `tfsdk:"jit_managed"`
}

func (d *networkSecurityGroupDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_network_security_group"
}

func (d *networkSecurityGroupDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	stringList := func(desc string) schema.ListAttribute {
		return schema.ListAttribute{ElementType: types.StringType, Computed: true, MarkdownDescription: desc}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "The security rules of a network security group as Azure holds them now, " +
			"including rules no Terraform configuration manages. Use it to see what is really open.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "The Azure resource id of the network security group.",
				Validators:          []validator.String{validators.NetworkSecurityGroupID()},
			},
			"name":     schema.StringAttribute{Computed: true, MarkdownDescription: "The NSG's name."},
			"location": schema.StringAttribute{Computed: true, MarkdownDescription: "The NSG's Azure region."},
			"security_rules": schema.ListNestedAttribute{
				Computed:            true,
				MarkdownDescription: "The NSG's rules (not Azure's default rules), inbound before outbound, by priority.",
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"name":                         schema.StringAttribute{Computed: true, MarkdownDescription: "The rule's name."},
						"priority":                     schema.Int64Attribute{Computed: true, MarkdownDescription: "100–4096; lower wins."},
						"direction":                    schema.StringAttribute{Computed: true, MarkdownDescription: "`Inbound` or `Outbound`."},
						"access":                       schema.StringAttribute{Computed: true, MarkdownDescription: "`Allow` or `Deny`."},
						"protocol":                     schema.StringAttribute{Computed: true, MarkdownDescription: "`Tcp`, `Udp`, `Icmp`, `Esp`, `Ah` or `*`."},
						"source_address_prefixes":      stringList("Source CIDRs, addresses or service tags."),
						"source_port_ranges":           stringList("Source ports or ranges."),
						"destination_address_prefixes": stringList("Destination CIDRs, addresses or service tags."),
						"destination_port_ranges":      stringList("Destination ports or ranges."),
						"description":                  schema.StringAttribute{Computed: true, MarkdownDescription: "The rule's description."},
						"jit_managed":                  schema.BoolAttribute{Computed: true, MarkdownDescription: "Whether the rule is in the `jit-` namespace this provider manages."},
					},
				},
			},
		},
	}
}

func (d *networkSecurityGroupDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.data = configureData(req.ProviderData, &resp.Diagnostics)
}

func (d *networkSecurityGroupDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var model networkSecurityGroupModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &model)...)
	if resp.Diagnostics.HasError() {
		return
	}

	nsg, err := d.data.client.GetNSG(ctx, model.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Unable to Read Network Security Group",
			azureErrorDetail("read network security group", model.ID.ValueString(), err))
		return
	}

	rules := append([]jit.SecurityRule(nil), nsg.Rules...)
	sort.Slice(rules, func(i, j int) bool {
		if rules[i].Direction != rules[j].Direction {
			return rules[i].Direction == jit.Inbound
		}
		return rules[i].Priority < rules[j].Priority
	})

	model.Name = types.StringValue(nsg.Name)
	model.Location = types.StringValue(nsg.Location)
	model.Rules = make([]securityRuleModel, 0, len(rules))
	for _, r := range rules {
		m := securityRuleModel{
			Name:        types.StringValue(r.Name),
			Priority:    types.Int64Value(int64(r.Priority)),
			Direction:   types.StringValue(string(r.Direction)),
			Access:      types.StringValue(string(r.Access)),
			Protocol:    types.StringValue(string(r.Protocol)),
			Description: types.StringValue(r.Description),
			JITManaged:  types.BoolValue(strings.HasPrefix(strings.ToLower(r.Name), jit.RuleNamePrefix)),
		}
		for _, l := range []struct {
			dst *types.List
			src []string
		}{
			{&m.SourceAddressPrefixes, r.SourcePrefixes},
			{&m.SourcePortRanges, r.SourcePorts},
			{&m.DestinationAddressPrefixes, r.DestinationPrefixes},
			{&m.DestinationPortRanges, r.DestinationPorts},
		} {
			list, diags := types.ListValueFrom(ctx, types.StringType, nonNil(l.src))
			resp.Diagnostics.Append(diags...)
			*l.dst = list
		}
		model.Rules = append(model.Rules, m)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &model)...)
}

// nonNil makes an absent list an empty one, so the attribute is [] not null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
