package provider

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

var _ datasource.DataSourceWithConfigure = (*accessGrantsDataSource)(nil)

func newAccessGrantsDataSource() datasource.DataSource { return &accessGrantsDataSource{} }

// accessGrantsDataSource lists who is in: every grant rule of a policy on
// its NSGs as Azure holds them now, whichever workspace (or tool) wrote it.
// The NSG is the source of truth, not anyone's Terraform state.
type accessGrantsDataSource struct {
	data *providerData
}

type accessGrantsModel struct {
	PolicyID  types.String           `tfsdk:"policy_id"`
	Grants    []accessGrantRuleModel `tfsdk:"grants"`
	Malformed []malformedRuleModel   `tfsdk:"malformed_rules"`
}

type accessGrantRuleModel struct {
	GrantID   types.String `tfsdk:"grant_id"`
	NSGID     types.String `tfsdk:"network_security_group_id"`
	RuleName  types.String `tfsdk:"rule_name"`
	Priority  types.Int64  `tfsdk:"priority"`
	Source    types.String `tfsdk:"source_address_prefix"`
	Ports     types.List   `tfsdk:"ports"`
	Protocol  types.String `tfsdk:"protocol"`
	Requester types.String `tfsdk:"requester"`
	ExpiresAt types.String `tfsdk:"expires_at"`
	Status    types.String `tfsdk:"status"`
}

type malformedRuleModel struct {
	NSGID    types.String `tfsdk:"network_security_group_id"`
	RuleName types.String `tfsdk:"rule_name"`
	Reason   types.String `tfsdk:"reason"`
}

func (d *accessGrantsDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_access_grants"
}

func (d *accessGrantsDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, MarkdownDescription: desc}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Who can get in through a policy right now: every grant rule of the policy on its NSGs as Azure " +
			"holds them, written by any workspace, with its decoded fields. A platform workspace can output it, or " +
			"check it in a `check` block, without sharing the requests' state.",
		Attributes: map[string]schema.Attribute{
			"policy_id": schema.StringAttribute{
				Required: true,
				MarkdownDescription: "The policy's id, `<name>@<nsg id>,<nsg id>...` (`jit_policy.<name>.id`, or " +
					"`provider::jit::policy_id(name, nsg_ids)` in a workspace that does not hold the policy).",
			},
			"grants": schema.ListNestedAttribute{
				Computed: true,
				MarkdownDescription: "The policy's grant rules, one per rule and NSG (a grant has a rule on each NSG of its " +
					"policy), soonest expiry first. A rule whose expiry has passed is listed as `expired` until it is closed.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"grant_id":                  str("The grant's id (derived from its request)."),
					"network_security_group_id": str("The NSG holding this rule."),
					"rule_name":                 str("The rule's name, `jit-<policy>-g-<grant id>`."),
					"priority":                  schema.Int64Attribute{Computed: true, MarkdownDescription: "The rule's priority, in the policy's grant range."},
					"source_address_prefix":     str("The address the grant opens the ports for."),
					"ports": schema.ListAttribute{Computed: true, ElementType: types.Int64Type,
						MarkdownDescription: "The ports the rule opens."},
					"protocol":   str("`Tcp`, `Udp` or `*`."),
					"requester":  str("Who asked, as recorded on the rule."),
					"expires_at": str("When the grant ends (RFC 3339)."),
					"status":     str("`active`, or `expired` when the expiry has passed and the rule is still there (jitd or the next apply closes it)."),
				}},
			},
			"malformed_rules": schema.ListNestedAttribute{
				Computed: true,
				MarkdownDescription: "Allow rules in the policy's grant namespace that do not decode as a grant (tampered " +
					"with, or written by hand): `jitd` closes them. Listed so that nothing open goes unseen.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"network_security_group_id": str("The NSG holding the rule."),
					"rule_name":                 str("The rule's name."),
					"reason":                    str("Why it does not decode."),
				}},
			},
		},
	}
}

func (d *accessGrantsDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.data = configureData(req.ProviderData, &resp.Diagnostics)
}

func (d *accessGrantsDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var model accessGrantsModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &model)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name, nsgIDs, err := parsePolicyID(model.PolicyID.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("policy_id"), "Invalid Policy ID", err.Error())
		return
	}
	now := d.data.clock.Now()
	model.Grants, model.Malformed = []accessGrantRuleModel{}, []malformedRuleModel{}
	for _, nsgID := range nsgIDs {
		view, err := d.data.rules.View(ctx, nsgID)
		if errors.Is(err, azure.ErrNotFound) {
			resp.Diagnostics.AddWarning("Network Security Group Not Found",
				"The policy's NSG "+nsgID+" does not exist (or cannot be read); it holds no grant.")
			continue
		}
		if err != nil {
			resp.Diagnostics.AddError("Unable to Read Access Grants", azureErrorDetail("read the rules of", nsgID, err))
			return
		}
		for _, g := range view.Grants {
			if g.Policy != name {
				continue
			}
			model.Grants = append(model.Grants, grantRuleModel(ctx, nsgID, g, now, resp))
		}
		prefix := jit.RuleNamePrefix + name + "-g-"
		for _, m := range view.Malformed {
			if strings.HasPrefix(m.Rule.Name, prefix) && strings.EqualFold(string(m.Rule.Access), string(jit.Allow)) {
				model.Malformed = append(model.Malformed, malformedRuleModel{
					NSGID: types.StringValue(nsgID), RuleName: types.StringValue(m.Rule.Name), Reason: types.StringValue(m.Reason),
				})
			}
		}
	}
	slices.SortStableFunc(model.Grants, func(a, b accessGrantRuleModel) int {
		if c := strings.Compare(a.ExpiresAt.ValueString(), b.ExpiresAt.ValueString()); c != 0 {
			return c
		}
		if c := strings.Compare(a.GrantID.ValueString(), b.GrantID.ValueString()); c != 0 {
			return c
		}
		return strings.Compare(a.NSGID.ValueString(), b.NSGID.ValueString())
	})
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &model)...)
}

// grantRuleModel is one decoded grant rule as the data source shows it.
func grantRuleModel(ctx context.Context, nsgID string, g jit.GrantRule, now time.Time, resp *datasource.ReadResponse) accessGrantRuleModel {
	ports := make([]int64, 0, len(g.Rule.DestinationPorts))
	for _, p := range g.Rule.DestinationPorts {
		if n, err := strconv.ParseInt(p, 10, 64); err == nil {
			ports = append(ports, n)
		}
	}
	list, diags := types.ListValueFrom(ctx, types.Int64Type, ports)
	resp.Diagnostics.Append(diags...)
	source := ""
	if len(g.Rule.SourcePrefixes) > 0 {
		source = g.Rule.SourcePrefixes[0]
	}
	status := grantActive
	if !now.Before(g.ExpiresAt) {
		status = string(jit.GrantExpired)
	}
	return accessGrantRuleModel{
		GrantID: types.StringValue(g.ID), NSGID: types.StringValue(nsgID), RuleName: types.StringValue(g.Rule.Name),
		Priority: types.Int64Value(int64(g.Rule.Priority)), Source: types.StringValue(source), Ports: list,
		Protocol: types.StringValue(string(g.Rule.Protocol)), Requester: types.StringValue(g.Requester),
		ExpiresAt: types.StringValue(g.ExpiresAt.UTC().Format(time.RFC3339)), Status: types.StringValue(status),
	}
}
