package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// This file maps states of jit_policy's earlier schema versions onto the
// current one.

// UpgradeState upgrades states of schema version 0, where destinations,
// allowed sources and ports were lists: Terraform compared them by position,
// so a policy imported (read back in canonical order) planned a change
// against a configuration listing them in another order. The values are
// the same; only their type changes.
func (r *policyResource) UpgradeState(ctx context.Context) map[int64]resource.StateUpgrader {
	v0 := policySchemaV0(ctx)
	return map[int64]resource.StateUpgrader{
		0: {PriorSchema: &v0, StateUpgrader: upgradePolicyStateV0},
	}
}

// policyModelV0 is the state of schema version 0. Its last two attributes
// came late in that version: states written before them read as null.
type policyModelV0 struct {
	ID                  types.String   `tfsdk:"id"`
	Name                types.String   `tfsdk:"name"`
	NSGIDs              types.Set      `tfsdk:"network_security_group_ids"`
	DestinationPrefixes types.List     `tfsdk:"destination_address_prefixes"`
	AllowedSources      types.List     `tfsdk:"allowed_source_address_prefixes"`
	Ports               types.List     `tfsdk:"ports"`
	Band                types.Object   `tfsdk:"priority_band"`
	FailOnBypass        types.Bool     `tfsdk:"fail_on_bypass"`
	RuleNames           types.List     `tfsdk:"rule_names"`
	BypassingRules      types.List     `tfsdk:"bypassing_rules"`
	Timeouts            timeouts.Value `tfsdk:"timeouts"`
	FailOnStanding      types.Bool     `tfsdk:"fail_on_standing_access"`
	StandingAccess      types.List     `tfsdk:"standing_access"`
}

// policySchemaV0 is schema version 0, as far as reading a state needs it:
// the attributes and their types.
func policySchemaV0(ctx context.Context) schema.Schema {
	findings := schema.ListNestedAttribute{Computed: true, NestedObject: schema.NestedAttributeObject{
		Attributes: map[string]schema.Attribute{
			"network_security_group_id": schema.StringAttribute{Computed: true},
			"name":                      schema.StringAttribute{Computed: true},
			"priority":                  schema.Int64Attribute{Computed: true},
			"port":                      schema.Int64Attribute{Computed: true},
			"protocol":                  schema.StringAttribute{Computed: true},
			"reason":                    schema.StringAttribute{Computed: true},
		},
	}}
	return schema.Schema{
		Attributes: map[string]schema.Attribute{
			"id":                              schema.StringAttribute{Computed: true},
			"name":                            schema.StringAttribute{Required: true},
			"network_security_group_ids":      schema.SetAttribute{Required: true, ElementType: types.StringType},
			"destination_address_prefixes":    schema.ListAttribute{Optional: true, Computed: true, ElementType: types.StringType},
			"allowed_source_address_prefixes": schema.ListAttribute{Required: true, ElementType: types.StringType},
			"ports": schema.ListNestedAttribute{Required: true, NestedObject: schema.NestedAttributeObject{
				Attributes: map[string]schema.Attribute{
					"port":         schema.Int64Attribute{Required: true},
					"protocol":     schema.StringAttribute{Optional: true, Computed: true},
					"max_duration": schema.StringAttribute{Required: true},
				},
			}},
			"priority_band": schema.SingleNestedAttribute{Optional: true, Computed: true, Attributes: map[string]schema.Attribute{
				"start": schema.Int64Attribute{Required: true},
				"end":   schema.Int64Attribute{Required: true},
			}},
			"fail_on_bypass":          schema.BoolAttribute{Optional: true, Computed: true},
			"fail_on_standing_access": schema.BoolAttribute{Optional: true, Computed: true},
			"rule_names":              schema.ListAttribute{Computed: true, ElementType: types.StringType},
			"bypassing_rules":         findings,
			"standing_access":         findings,
			"timeouts":                timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true}),
		},
	}
}

// upgradePolicyStateV0 turns the lists of a version 0 state into sets,
// element for element. A state from before fail_on_standing_access gets
// its default; standing_access stays null until the next refresh reads it.
func upgradePolicyStateV0(ctx context.Context, req resource.UpgradeStateRequest, resp *resource.UpgradeStateResponse) {
	var old policyModelV0
	resp.Diagnostics.Append(req.State.Get(ctx, &old)...)
	if resp.Diagnostics.HasError() {
		return
	}
	toSet := func(l types.List, elem attr.Type) types.Set {
		switch {
		case l.IsNull():
			return types.SetNull(elem)
		case l.IsUnknown():
			return types.SetUnknown(elem)
		}
		v, diags := types.SetValue(elem, l.Elements())
		resp.Diagnostics.Append(diags...)
		return v
	}
	m := policyModel{
		ID:                  old.ID,
		Name:                old.Name,
		NSGIDs:              old.NSGIDs,
		DestinationPrefixes: toSet(old.DestinationPrefixes, types.StringType),
		AllowedSources:      toSet(old.AllowedSources, types.StringType),
		Ports:               toSet(old.Ports, types.ObjectType{AttrTypes: portAttrTypes}),
		Band:                old.Band,
		FailOnBypass:        old.FailOnBypass,
		FailOnStanding:      old.FailOnStanding,
		EndSessions:         types.BoolValue(false),
		FailOnAdmin:         types.BoolValue(false),
		AdminOverrides:      types.ListNull(types.ObjectType{AttrTypes: adminAttrTypes}),
		RuleNames:           old.RuleNames,
		BypassingRules:      old.BypassingRules,
		StandingAccess:      old.StandingAccess,
		Timeouts:            old.Timeouts,
	}
	if m.FailOnStanding.IsNull() {
		m.FailOnStanding = types.BoolValue(false)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
