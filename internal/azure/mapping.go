package azure

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// NSGID is a parsed network security group resource id.
type NSGID struct {
	SubscriptionID string
	ResourceGroup  string
	Name           string
}

// String returns the canonical ARM id.
func (id NSGID) String() string {
	return "/subscriptions/" + id.SubscriptionID + "/resourceGroups/" + id.ResourceGroup +
		"/providers/Microsoft.Network/networkSecurityGroups/" + id.Name
}

// ruleID returns the ARM id of the rule name on this NSG.
func (id NSGID) ruleID(name string) string {
	return id.String() + "/securityRules/" + name
}

// nsgResourceType is the ARM type of a network security group.
const nsgResourceType = "Microsoft.Network/networkSecurityGroups"

// ParseNSGID parses an ARM network security group id, case-insensitively as
// ARM does. Any other kind of id (including a rule's) is an ErrInvalid
// *Error.
func ParseNSGID(id string) (NSGID, error) {
	invalid := func(msg string) error {
		return &Error{Kind: KindInvalid, Op: "parse network security group id", ResourceID: id, Message: msg}
	}
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return NSGID{}, invalid(err.Error())
	}
	if !strings.EqualFold(rid.ResourceType.String(), nsgResourceType) {
		return NSGID{}, invalid(fmt.Sprintf("is a %s, not a %s", rid.ResourceType.String(), nsgResourceType))
	}
	if rid.SubscriptionID == "" || rid.ResourceGroupName == "" || rid.Name == "" {
		return NSGID{}, invalid("want /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/networkSecurityGroups/<name>")
	}
	return NSGID{SubscriptionID: rid.SubscriptionID, ResourceGroup: rid.ResourceGroupName, Name: rid.Name}, nil
}

// ruleFromARM converts an SDK rule. Azure fills either the singular or the
// plural field of each address and port; both end up in one slice.
func ruleFromARM(r *armnetwork.SecurityRule) jit.SecurityRule {
	if r == nil {
		return jit.SecurityRule{}
	}
	out := jit.SecurityRule{Name: deref(r.Name)}
	p := r.Properties
	if p == nil {
		return out
	}
	out.Priority = deref(p.Priority)
	if p.Direction != nil {
		out.Direction = jit.Direction(*p.Direction)
	}
	if p.Access != nil {
		out.Access = jit.Access(*p.Access)
	}
	if p.Protocol != nil {
		out.Protocol = jit.Protocol(*p.Protocol)
	}
	out.SourcePrefixes = oneOrMany(p.SourceAddressPrefix, p.SourceAddressPrefixes)
	out.SourcePorts = oneOrMany(p.SourcePortRange, p.SourcePortRanges)
	out.DestinationPrefixes = oneOrMany(p.DestinationAddressPrefix, p.DestinationAddressPrefixes)
	out.DestinationPorts = oneOrMany(p.DestinationPortRange, p.DestinationPortRanges)
	out.Description = deref(p.Description)
	out.UsesApplicationSecurityGroups = len(p.SourceApplicationSecurityGroups) > 0 ||
		len(p.DestinationApplicationSecurityGroups) > 0
	return out
}

// rulesFromARM converts a list of SDK rules, skipping nil entries.
func rulesFromARM(rs []*armnetwork.SecurityRule) []jit.SecurityRule {
	out := make([]jit.SecurityRule, 0, len(rs))
	for _, r := range rs {
		if r != nil {
			out = append(out, ruleFromARM(r))
		}
	}
	return out
}

// ruleToARM converts a rule for a PUT: one value goes into the singular
// field and several into the plural one, as Azure itself stores them, so a
// rule read back compares equal to the one written.
func ruleToARM(r jit.SecurityRule) armnetwork.SecurityRule {
	p := &armnetwork.SecurityRulePropertiesFormat{
		Priority: ptr(r.Priority),
	}
	if r.Direction != "" {
		p.Direction = ptr(armnetwork.SecurityRuleDirection(r.Direction))
	}
	if r.Access != "" {
		p.Access = ptr(armnetwork.SecurityRuleAccess(r.Access))
	}
	if r.Protocol != "" {
		p.Protocol = ptr(armnetwork.SecurityRuleProtocol(r.Protocol))
	}
	p.SourceAddressPrefix, p.SourceAddressPrefixes = splitOneOrMany(r.SourcePrefixes)
	p.SourcePortRange, p.SourcePortRanges = splitOneOrMany(r.SourcePorts)
	p.DestinationAddressPrefix, p.DestinationAddressPrefixes = splitOneOrMany(r.DestinationPrefixes)
	p.DestinationPortRange, p.DestinationPortRanges = splitOneOrMany(r.DestinationPorts)
	if r.Description != "" {
		p.Description = ptr(r.Description)
	}
	return armnetwork.SecurityRule{Name: ptr(r.Name), Properties: p}
}

func oneOrMany(one *string, many []*string) []string {
	if len(many) > 0 {
		out := make([]string, 0, len(many))
		for _, s := range many {
			if s != nil {
				out = append(out, *s)
			}
		}
		return out
	}
	if one != nil && *one != "" {
		return []string{*one}
	}
	return nil
}

func splitOneOrMany(values []string) (*string, []*string) {
	switch len(values) {
	case 0:
		return nil, nil
	case 1:
		return ptr(values[0]), nil
	}
	many := make([]*string, len(values))
	for i := range values {
		many[i] = ptr(values[i])
	}
	return nil, many
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
