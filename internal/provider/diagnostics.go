package provider

import (
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
)

// configureData extracts the provider's data in a resource's or data
// source's Configure. It returns nil while the provider is not configured yet
// (Terraform validates configuration before configuring providers).
func configureData(raw any, diags *diag.Diagnostics) *providerData {
	if raw == nil {
		return nil
	}
	data, ok := raw.(*providerData)
	if !ok {
		diags.AddError("Unexpected Provider Data Type",
			fmt.Sprintf("Expected *providerData, got %T. This is a bug in the provider; please report it.", raw))
		return nil
	}
	return data
}

// azureErrorDetail explains a failed Azure call: what failed, on which
// resource, what the user can do, then the original error.
func azureErrorDetail(action, resourceID string, err error) string {
	hint := ""
	switch {
	case errors.Is(err, azure.ErrNotFound):
		hint = "The resource does not exist, or the identity Terraform runs as cannot see it. Check the id."
	case errors.Is(err, azure.ErrUnauthorized):
		hint = "Azure did not accept the provider's credentials. Check the tenant, client id and secret or federated token."
	case errors.Is(err, azure.ErrForbidden):
		hint = "The identity Terraform runs as lacks permission. It needs Microsoft.Network/networkSecurityGroups/read " +
			"and, to change rules, Microsoft.Network/networkSecurityGroups/write on this resource (both in Network Contributor)."
	case errors.Is(err, azure.ErrThrottled), errors.Is(err, azure.ErrUnavailable):
		hint = "Azure is throttling or unavailable; the provider already retried. Try again later."
	}
	detail := fmt.Sprintf("Unable to %s", action)
	if resourceID != "" {
		detail += fmt.Sprintf(" %q", resourceID)
	}
	detail += "."
	if hint != "" {
		detail += "\n\n" + hint
	}
	return detail + "\n\nOriginal Error: " + err.Error()
}
