package validators

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
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
func CheckNetworkSecurityGroupID(id string) error { return jit.CheckNSGID(id) }
