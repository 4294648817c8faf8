package testproc

import (
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// ToARM is the armnetwork form of a rule: single values in the singular
// fields, as the portal and azurerm write them, so that tests plant rules
// the way other tools leave them.
func ToARM(r jit.SecurityRule) *armnetwork.SecurityRule {
	one := func(v []string) (*string, []*string) {
		if len(v) == 1 {
			return To(v[0]), nil
		}
		var many []*string
		for _, s := range v {
			many = append(many, To(s))
		}
		return nil, many
	}
	p := &armnetwork.SecurityRulePropertiesFormat{
		Priority:  To(r.Priority),
		Direction: To(armnetwork.SecurityRuleDirection(r.Direction)),
		Access:    To(armnetwork.SecurityRuleAccess(r.Access)),
		Protocol:  To(armnetwork.SecurityRuleProtocol(r.Protocol)),
	}
	p.SourceAddressPrefix, p.SourceAddressPrefixes = one(r.SourcePrefixes)
	p.SourcePortRange, p.SourcePortRanges = one(r.SourcePorts)
	p.DestinationAddressPrefix, p.DestinationAddressPrefixes = one(r.DestinationPrefixes)
	p.DestinationPortRange, p.DestinationPortRanges = one(r.DestinationPorts)
	if r.Description != "" {
		p.Description = To(r.Description)
	}
	return &armnetwork.SecurityRule{Name: To(r.Name), Properties: p}
}

// To returns a pointer to v, as the SDK's optional fields want.
func To[T any](v T) *T { return &v }
