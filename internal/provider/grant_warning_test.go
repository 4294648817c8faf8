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

// The plan of an expired or revoked grant tells the user what happened and
// what to do. terraform-plugin-testing cannot see warnings, so ModifyPlan is
// called in-process with the state Read left behind.
func TestGrantPlanWarnsAboutExpiryAndRevocation(t *testing.T) {
	ctx := context.Background()
	r := &grantResource{data: &providerData{}}
	schemaResp := &resource.SchemaResponse{}
	r.Schema(ctx, resource.SchemaRequest{}, schemaResp)
	sch := schemaResp.Schema

	tests := []struct {
		status    string
		open      bool
		want      []string
		wantClose bool
	}{
		{grantActive, true, nil, false},
		{grantExpired, false, []string{"expired at 2026-11-24T10:00:00Z", "Remove this block; to ask again, open a new request"}, false},
		{grantExpired, true, []string{"expired at 2026-11-24T10:00:00Z", "this apply deletes it"}, true},
		{grantRevoked, false, []string{"was revoked before its expiry (2026-11-24T10:00:00Z)", "will not open again"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			state := tfsdk.State{Schema: sch}
			if diags := state.Set(ctx, grantStateModel(tc.status, tc.open)); diags.HasError() {
				t.Fatal(diags)
			}
			plan := tfsdk.Plan{Schema: sch, Raw: state.Raw}
			req := resource.ModifyPlanRequest{State: state, Plan: plan, Config: tfsdk.Config{Schema: sch, Raw: state.Raw}}
			resp := &resource.ModifyPlanResponse{Plan: plan}
			r.ModifyPlan(ctx, req, resp)
			if resp.Diagnostics.HasError() {
				t.Fatal(resp.Diagnostics)
			}
			warnings := resp.Diagnostics.Warnings()
			if len(tc.want) == 0 {
				if len(warnings) != 0 {
					t.Fatalf("an active grant warns: %v", warnings)
				}
				return
			}
			if len(warnings) != 1 {
				t.Fatalf("want one warning, got %v", warnings)
			}
			for _, w := range tc.want {
				if !strings.Contains(warnings[0].Detail(), w) {
					t.Errorf("warning %q does not say %q", warnings[0].Detail(), w)
				}
			}
			var planned grantModel
			resp.Diagnostics.Append(resp.Plan.Get(ctx, &planned)...)
			if closes := tc.open && !planned.Open.ValueBool(); closes != tc.wantClose {
				t.Errorf("plan closes = %v, want %v", closes, tc.wantClose)
			}
		})
	}
}

func grantStateModel(status string, open bool) *grantModel {
	const policyID = "web@/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg"
	return &grantModel{
		ID:                types.StringValue(policyID + "#abc"),
		GrantID:           types.StringValue("abc"),
		PolicyID:          types.StringValue(policyID),
		Ports:             types.ListValueMust(types.Int64Type, []attr.Value{types.Int64Value(22)}),
		Protocol:          types.StringValue("Tcp"),
		Source:            types.StringValue("203.0.113.7"),
		Duration:          types.StringValue("1h"),
		Justification:     types.StringValue("test"),
		Requester:         types.StringValue("alice@example.com"),
		ApprovalReference: types.StringNull(),
		StartsAt:          types.StringValue("2026-11-24T09:00:00Z"),
		ExpiresAt:         types.StringValue("2026-11-24T10:00:00Z"),
		Status:            types.StringValue(status),
		Open:              types.BoolValue(open),
		RuleName:          types.StringValue("jit-web-g-abc"),
		NSGIDs:            types.SetValueMust(types.StringType, []attr.Value{types.StringValue("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg")}),
		Timeouts:          timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{"create": types.StringType, "read": types.StringType, "update": types.StringType, "delete": types.StringType})},
	}
}
