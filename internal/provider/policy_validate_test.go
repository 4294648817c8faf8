package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// Allowed sources the NSG cannot store as written (adjacent ranges, a
// single address with /32) are read back merged: validate says how to
// write them, so that an imported policy plans empty. terraform-plugin-
// testing cannot see warnings, so ValidateConfig is called in-process.
func TestPolicyValidateWarnsAboutSourcesReadBackMerged(t *testing.T) {
	ctx := context.Background()
	r := &policyResource{}
	schemaResp := &resource.SchemaResponse{}
	r.Schema(ctx, resource.SchemaRequest{}, schemaResp)
	tests := []struct {
		sources []string
		want    string // "" means no warning
	}{
		{[]string{"203.0.113.0/24", "198.51.100.7"}, ""},
		{[]string{"198.51.100.7", "203.0.113.0/24"}, ""}, // order does not matter: a set
		{[]string{"203.0.113.128/25", "203.0.113.0/25"}, "as 203.0.113.0/24 "},
		{[]string{"198.51.100.7/32"}, "as 198.51.100.7 "},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.sources, ","), func(t *testing.T) {
			config := tfsdk.Config{Schema: schemaResp.Schema}
			var sources []attr.Value
			for _, s := range tc.sources {
				sources = append(sources, types.StringValue(s))
			}
			m := policyModel{
				ID: types.StringUnknown(), Name: types.StringValue("web"),
				NSGIDs:              types.SetValueMust(types.StringType, []attr.Value{types.StringValue("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg")}),
				DestinationPrefixes: types.SetValueMust(types.StringType, []attr.Value{types.StringValue("10.0.1.4")}),
				AllowedSources:      types.SetValueMust(types.StringType, sources),
				Ports: types.SetValueMust(types.ObjectType{AttrTypes: portAttrTypes}, []attr.Value{types.ObjectValueMust(portAttrTypes, map[string]attr.Value{
					"port": types.Int64Value(22), "protocol": types.StringValue("Tcp"), "max_duration": types.StringValue("1h"),
				})}),
				Band:           types.ObjectNull(bandAttrTypes),
				FailOnBypass:   types.BoolNull(),
				FailOnStanding: types.BoolNull(),
				RuleNames:      types.ListUnknown(types.StringType),
				BypassingRules: types.ListUnknown(types.ObjectType{AttrTypes: bypassAttrTypes}),
				StandingAccess: types.ListUnknown(types.ObjectType{AttrTypes: bypassAttrTypes}),
				EndSessions:    types.BoolNull(),
				FailOnAdmin:    types.BoolNull(),
				AdminOverrides: types.ListUnknown(types.ObjectType{AttrTypes: adminAttrTypes}),
				Timeouts:       timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{"create": types.StringType, "read": types.StringType, "update": types.StringType, "delete": types.StringType})},
			}
			state := tfsdk.State{Schema: schemaResp.Schema}
			if diags := state.Set(ctx, &m); diags.HasError() {
				t.Fatal(diags)
			}
			config.Raw = state.Raw
			resp := &resource.ValidateConfigResponse{}
			r.ValidateConfig(ctx, resource.ValidateConfigRequest{Config: config}, resp)
			if resp.Diagnostics.HasError() {
				t.Fatal(resp.Diagnostics)
			}
			warnings := resp.Diagnostics.Warnings()
			if tc.want == "" {
				if len(warnings) != 0 {
					t.Fatalf("unexpected warning: %v", warnings)
				}
				return
			}
			if len(warnings) != 1 || !strings.Contains(warnings[0].Detail(), tc.want) {
				t.Fatalf("warnings %v, want one saying %q", warnings, tc.want)
			}
		})
	}
}
