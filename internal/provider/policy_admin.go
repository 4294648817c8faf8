package provider

import (
	"context"
	"errors"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// This file holds what Azure Virtual Network Manager security admin rules
// do to a policy: they are evaluated before any NSG, so an AlwaysAllow rule
// on a protected port is a bypass no NSG can close, and a Deny rule makes
// grants from allowed sources useless (jit.Policy.AdminOverrides decides,
// jit.PolicyFindings.AdminNotice says so).

var adminAttrTypes = map[string]attr.Type{
	"network_security_group_id": types.StringType, "virtual_network_id": types.StringType, "name": types.StringType,
	"priority": types.Int64Type, "access": types.StringType, "port": types.Int64Type, "protocol": types.StringType,
	"reason": types.StringType,
}

func adminOverrideAttribute() schema.ListNestedAttribute {
	str := func(d string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, MarkdownDescription: d}
	}
	return schema.ListNestedAttribute{
		Computed: true,
		MarkdownDescription: "Azure Virtual Network Manager security admin rules in effect for the virtual networks of the " +
			"policy's NSGs that decide a protected port before any NSG: `AlwaysAllow` (the port is open and no NSG rule, " +
			"the policy's included, can close it) or `Deny` for some allowed sources (their grants cannot work). " +
			"Empty when none, or when the admin rules could not be read (a warning says so).",
		NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
			"network_security_group_id": str("The policy's NSG whose traffic the rule decides."),
			"virtual_network_id":        str("The virtual network the admin rule is in effect for."),
			"name":                      str("The admin rule's name."),
			"priority":                  schema.Int64Attribute{Computed: true, MarkdownDescription: "The admin rule's priority (1–4096, lower first)."},
			"access":                    str("`AlwaysAllow` or `Deny`."),
			"port":                      schema.Int64Attribute{Computed: true, MarkdownDescription: "The protected port it decides."},
			"protocol":                  str("The protected port's protocol."),
			"reason":                    str("What it does to the policy."),
		}},
	}
}

// adminOverrides reads the admin rules in effect for the policy's NSGs and
// returns those that decide a protected port. Rules that cannot be read
// (a missing permission, say) give a warning, not an error: the policy
// still closes what NSGs can close.
func (r *policyResource) adminOverrides(ctx context.Context, p jit.Policy, nsgIDs []string, diags *diag.Diagnostics) []jit.NSGAdminOverride {
	findings := jit.PolicyFindings{Policy: p.Name}
	for _, nsgID := range nsgIDs {
		byVnet, err := r.data.rules.AdminRules(ctx, nsgID)
		if err != nil {
			if !errors.Is(err, azure.ErrNotFound) {
				detail := azureErrorDetail("read the security admin rules in effect for", nsgID, err)
				if errors.Is(err, azure.ErrForbidden) {
					detail += "\n\nReading them needs Microsoft.Network/virtualNetworks/listNetworkManagerEffectiveSecurityAdminRules/action " +
						"(in Network Contributor) on the NSG's virtual networks."
				}
				diags.AddWarning("Unable to Check Security Admin Rules", detail)
			}
			continue
		}
		for _, vr := range byVnet {
			findings.AddAdmin(p, nsgID, vr.vnetID, vr.rules)
		}
	}
	return findings.Admin
}

// adminOverrideList is the attribute's value.
func adminOverrideList(overrides []jit.NSGAdminOverride) types.List {
	values := make([]attr.Value, 0, len(overrides))
	for _, o := range overrides {
		values = append(values, types.ObjectValueMust(adminAttrTypes, map[string]attr.Value{
			"network_security_group_id": types.StringValue(o.NSGID),
			"virtual_network_id":        types.StringValue(o.VNetID),
			"name":                      types.StringValue(o.Rule.Name),
			"priority":                  types.Int64Value(int64(o.Rule.Priority)),
			"access":                    types.StringValue(o.Rule.Access),
			"port":                      types.Int64Value(int64(o.Port.Number)),
			"protocol":                  types.StringValue(string(o.Port.Protocol)),
			"reason":                    types.StringValue(o.Reason),
		}))
	}
	return types.ListValueMust(types.ObjectType{AttrTypes: adminAttrTypes}, values)
}
