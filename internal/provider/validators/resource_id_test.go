package validators

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

func TestNetworkSecurityGroupID(t *testing.T) {
	const good = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
	tests := []struct {
		id      string
		wantErr string // substring; "" means valid
	}{
		{good, ""},
		{strings.ToLower(good), ""},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic", `expected "networkSecurityGroups"`},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/networkSecurityGroups/n", `expected "Microsoft.Network"`},
		{"subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n", "is not a network security group id"},
		{good + "/securityRules/r", "is not a network security group id"},
		{"/subscriptions//resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n", "empty subscription"},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/", "empty network security group name"},
		{"nsg-web", "is not a network security group id"},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			resp := &validator.StringResponse{}
			NetworkSecurityGroupID().ValidateString(context.Background(), validator.StringRequest{
				Path:        path.Root("id"),
				ConfigValue: types.StringValue(tc.id),
			}, resp)
			if tc.wantErr == "" {
				if resp.Diagnostics.HasError() {
					t.Fatalf("unexpected error: %v", resp.Diagnostics)
				}
				return
			}
			if !resp.Diagnostics.HasError() {
				t.Fatalf("want an error containing %q, got none", tc.wantErr)
			}
			if got := resp.Diagnostics[0].Detail(); !strings.Contains(got, tc.wantErr) {
				t.Fatalf("error %q does not contain %q", got, tc.wantErr)
			}
		})
	}
}

func TestNetworkSecurityGroupIDIgnoresUnknownAndNull(t *testing.T) {
	for _, v := range []types.String{types.StringNull(), types.StringUnknown()} {
		resp := &validator.StringResponse{}
		NetworkSecurityGroupID().ValidateString(context.Background(), validator.StringRequest{Path: path.Root("id"), ConfigValue: v}, resp)
		if resp.Diagnostics.HasError() {
			t.Fatalf("%v: unexpected error %v", v, resp.Diagnostics)
		}
	}
}
