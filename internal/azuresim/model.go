package azuresim

import "encoding/json"

// securityRule is a security rule as ARM serialises it. Properties this
// package does not interpret are kept verbatim in extra so that a client that
// PUTs them reads them back unchanged, as it would on Azure.
type securityRule struct {
	ID         string         `json:"id,omitempty"`
	Name       string         `json:"name,omitempty"`
	Etag       string         `json:"etag,omitempty"`
	Type       string         `json:"type,omitempty"`
	Properties ruleProperties `json:"properties"`
}

// ruleProperties mirrors SecurityRulePropertiesFormat. Azure fills exactly one
// of each singular/plural pair (sourceAddressPrefix or sourceAddressPrefixes).
type ruleProperties struct {
	Description                          string            `json:"description,omitempty"`
	Protocol                             string            `json:"protocol,omitempty"`
	SourcePortRange                      string            `json:"sourcePortRange,omitempty"`
	DestinationPortRange                 string            `json:"destinationPortRange,omitempty"`
	SourceAddressPrefix                  string            `json:"sourceAddressPrefix,omitempty"`
	DestinationAddressPrefix             string            `json:"destinationAddressPrefix,omitempty"`
	SourcePortRanges                     []string          `json:"sourcePortRanges"`
	DestinationPortRanges                []string          `json:"destinationPortRanges"`
	SourceAddressPrefixes                []string          `json:"sourceAddressPrefixes"`
	DestinationAddressPrefixes           []string          `json:"destinationAddressPrefixes"`
	SourceApplicationSecurityGroups      []json.RawMessage `json:"sourceApplicationSecurityGroups,omitempty"`
	DestinationApplicationSecurityGroups []json.RawMessage `json:"destinationApplicationSecurityGroups,omitempty"`
	Access                               string            `json:"access,omitempty"`
	Priority                             *int32            `json:"priority,omitempty"`
	Direction                            string            `json:"direction,omitempty"`
	ProvisioningState                    string            `json:"provisioningState,omitempty"`

	// Extra holds the properties this package does not model, verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// ruleFields is ruleProperties without its methods, so that the JSON
// methods below can use the default encoding for the modelled fields.
type ruleFields ruleProperties

// modelledRuleProperties are the property names ruleProperties decodes.
var modelledRuleProperties = map[string]bool{
	"description": true, "protocol": true,
	"sourcePortRange": true, "destinationPortRange": true,
	"sourceAddressPrefix": true, "destinationAddressPrefix": true,
	"sourcePortRanges": true, "destinationPortRanges": true,
	"sourceAddressPrefixes": true, "destinationAddressPrefixes": true,
	"sourceApplicationSecurityGroups": true, "destinationApplicationSecurityGroups": true,
	"access": true, "priority": true, "direction": true, "provisioningState": true,
}

// UnmarshalJSON decodes the modelled fields and keeps the rest in Extra.
func (p *ruleProperties) UnmarshalJSON(b []byte) error {
	var f ruleFields
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k, v := range all {
		if !modelledRuleProperties[k] {
			if f.Extra == nil {
				f.Extra = make(map[string]json.RawMessage)
			}
			f.Extra[k] = v
		}
	}
	*p = ruleProperties(f)
	return nil
}

// MarshalJSON encodes the modelled fields, the plural lists always as arrays
// (ARM never answers null for them), and merges Extra back in.
func (p ruleProperties) MarshalJSON() ([]byte, error) {
	f := ruleFields(p)
	for _, l := range []*[]string{&f.SourcePortRanges, &f.DestinationPortRanges, &f.SourceAddressPrefixes, &f.DestinationAddressPrefixes} {
		if *l == nil {
			*l = []string{}
		}
	}
	b, err := json.Marshal(f)
	if err != nil || len(p.Extra) == 0 {
		return b, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range p.Extra {
		if _, ok := all[k]; !ok {
			all[k] = v
		}
	}
	return json.Marshal(all)
}

// clone returns a deep copy, so that a stored rule never aliases a request.
func (p ruleProperties) clone() ruleProperties {
	c := p
	c.SourcePortRanges = cloneStrings(p.SourcePortRanges)
	c.DestinationPortRanges = cloneStrings(p.DestinationPortRanges)
	c.SourceAddressPrefixes = cloneStrings(p.SourceAddressPrefixes)
	c.DestinationAddressPrefixes = cloneStrings(p.DestinationAddressPrefixes)
	c.SourceApplicationSecurityGroups = append([]json.RawMessage(nil), p.SourceApplicationSecurityGroups...)
	c.DestinationApplicationSecurityGroups = append([]json.RawMessage(nil), p.DestinationApplicationSecurityGroups...)
	if p.Priority != nil {
		v := *p.Priority
		c.Priority = &v
	}
	if p.Extra != nil {
		c.Extra = make(map[string]json.RawMessage, len(p.Extra))
		for k, v := range p.Extra {
			c.Extra[k] = v
		}
	}
	return c
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

// sourcePrefixes returns the rule's source prefixes whichever field holds them.
func (p *ruleProperties) sourcePrefixes() []string {
	return singleOrMany(p.SourceAddressPrefix, p.SourceAddressPrefixes)
}

// destinationPrefixes returns the rule's destination prefixes whichever field holds them.
func (p *ruleProperties) destinationPrefixes() []string {
	return singleOrMany(p.DestinationAddressPrefix, p.DestinationAddressPrefixes)
}

// sourcePorts returns the rule's source port ranges whichever field holds them.
func (p *ruleProperties) sourcePorts() []string {
	return singleOrMany(p.SourcePortRange, p.SourcePortRanges)
}

// destinationPorts returns the rule's destination port ranges whichever field holds them.
func (p *ruleProperties) destinationPorts() []string {
	return singleOrMany(p.DestinationPortRange, p.DestinationPortRanges)
}

func singleOrMany(one string, many []string) []string {
	if one != "" {
		return []string{one}
	}
	return many
}

// armError is the body of every ARM error response:
// {"error":{"code":"…","message":"…","details":[…]}}.
type armError struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Target  string     `json:"target,omitempty"`
	Details []armError `json:"details,omitempty"`
}

// Error makes an armError usable as a Go error in the simulator's own code.
func (e *armError) Error() string { return e.Code + ": " + e.Message }
