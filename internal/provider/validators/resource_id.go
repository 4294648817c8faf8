package validators

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
)

var _ validator.String = nsgIDValidator{}

// NetworkSecurityGroupID checks that a string is the ARM id of a network
// security group, so a typo fails at plan time rather than as a 404 at apply.
func NetworkSecurityGroupID() validator.String { return nsgIDValidator{} }

type nsgIDValidator struct{}

const nsgIDShape = "/subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Network/networkSecurityGroups/<name>"

func (nsgIDValidator) Description(context.Context) string {
	return "value must be a network security group id: " + nsgIDShape
}

func (v nsgIDValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v nsgIDValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := CheckNetworkSecurityGroupID(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Network Security Group ID",
			fmt.Sprintf("%s.\n\nExpected %s.", err, nsgIDShape))
	}
}

// CheckNetworkSecurityGroupID reports what is wrong with id as an NSG id, or nil.
// ARM matches the segment names case-insensitively, and so does this.
func CheckNetworkSecurityGroupID(id string) error {
	parts := strings.Split(id, "/")
	// "", subscriptions, S, resourceGroups, G, providers, Microsoft.Network, networkSecurityGroups, N
	if len(parts) != 9 || parts[0] != "" {
		return fmt.Errorf("%q is not a network security group id", id)
	}
	want := map[int]string{1: "subscriptions", 3: "resourceGroups", 5: "providers", 6: "Microsoft.Network", 7: "networkSecurityGroups"}
	for i, name := range want {
		if !strings.EqualFold(parts[i], name) {
			return fmt.Errorf("%q is not a network security group id: segment %d is %q, expected %q", id, i, parts[i], name)
		}
	}
	for i, what := range map[int]string{2: "subscription id", 4: "resource group name", 8: "network security group name"} {
		if parts[i] == "" {
			return fmt.Errorf("%q is not a network security group id: it has an empty %s", id, what)
		}
	}
	return nil
}
