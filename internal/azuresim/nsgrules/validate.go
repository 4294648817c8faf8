package nsgrules

import (
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf16"
)

// Azure's limits on security rules. They are the documented defaults of
// "Azure Resource Manager virtual networking limits".
const (
	MinPriority = 100
	MaxPriority = 4096

	// MaxNameLength is the longest security rule name Azure accepts.
	MaxNameLength = 80
	// MaxDescriptionLength counts UTF-16 code units, as Azure (.NET) does.
	MaxDescriptionLength = 140
	// MaxRules is the number of security rules one NSG may hold (default
	// rules excluded).
	MaxRules = 1000
	// MaxAddressesOrPorts bounds, per NSG and separately for each of the
	// source prefixes, destination prefixes, source port ranges and
	// destination port ranges, the entries summed over all rules (Azure's
	// MaxSecurityRuleAddressesOrPortsPerSecurityGroup).
	MaxAddressesOrPorts = 4000
	// MaxASGsPerRuleSide is the number of application security groups one
	// rule may name as its source (or as its destination).
	MaxASGsPerRuleSide = 10
)

// Error codes Azure answers on a security rule PUT. Codes marked
// "unconfirmed" follow Azure's naming where no public record of Azure's
// answer was found.
const (
	CodeInvalidResourceName = "InvalidResourceName"
	CodeParameterMissing    = "SecurityRuleParameterMissing"
	// CodeParametersMissing is Azure's answer when a side names neither a
	// prefix nor an application security group. Azure answers the same
	// "exactly one of" message when a side names more than one of them;
	// that it also uses this code there is unconfirmed.
	CodeParametersMissing = "SecurityRuleParametersMissing"
	CodeInvalidProtocol   = "SecurityRuleInvalidProtocol"
	CodeInvalidDirection  = "SecurityRuleInvalidDirection" // unconfirmed
	CodeInvalidAccess     = "SecurityRuleInvalidAccess"    // unconfirmed
	CodeInvalidPriority   = "SecurityRuleInvalidPriority"
	// CodeInvalidDescription is unconfirmed; the 140-character limit is
	// documented.
	CodeInvalidDescription    = "SecurityRuleInvalidDescription"
	CodeInvalidAddressPrefix  = "SecurityRuleInvalidAddressPrefix"
	CodeUnsupportedValue      = "SecurityRuleParameterContainsUnsupportedValue"
	CodeInvalidPortRange      = "SecurityRuleInvalidPortRange"
	CodeMixedAddressFamilies  = "ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies"
	CodeConflict              = "SecurityRuleConflict"
	CodeTooManyASGs           = "NumberOfApplicationSecurityGroupsReferencedInSecurityRuleLimitReached"
	CodeRuleCountLimit        = "SecurityRuleCountLimitReached"
	CodeAddressesOrPortsLimit = "SecurityRuleAddressesOrPortsPerSecurityGroupLimitReached"
)

func badRequest(target, code, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...), Target: target}
}

// RuleID returns the ARM id of security rule name in the NSG nsgID.
func RuleID(nsgID, name string) string { return nsgID + "/securityRules/" + name }

// ValidateRule checks a rule as Azure does on PUT. others are the NSG's other
// rules (excluding any rule with the same name) for SecurityRuleConflict.
//
// It returns the first failure in a fixed order: name, required fields,
// enums, priority, description, addresses, ports, address families, and
// last the conflict with other rules, so that a rule that is wrong in
// itself is reported as such whatever else is on the NSG.
func ValidateRule(nsgID string, r Rule, others []Rule) *Error {
	id := RuleID(nsgID, r.Name)
	checks := []func(string, Rule) *Error{
		validateName, validateRequired, validateEnums, validatePriority,
		validateDescription, validateAddresses, validatePorts, validateFamilies,
	}
	for _, check := range checks {
		if err := check(id, r); err != nil {
			return err
		}
	}
	return validateConflict(id, r, others)
}

// validateName applies Azure's name rule: up to 80 characters, word
// characters, '.', '-' and '_', starting with a word character and ending
// with a word character or '_'.
func validateName(id string, r Rule) *Error {
	n := []rune(r.Name)
	ok := len(n) > 0 && len(n) <= MaxNameLength && isWordRune(n[0]) && isWordRune(n[len(n)-1])
	for _, c := range n {
		ok = ok && (isWordRune(c) || c == '.' || c == '-')
	}
	if !ok {
		return badRequest(id, CodeInvalidResourceName,
			"Resource name %s is invalid. The name can be up to %d characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'.",
			r.Name, MaxNameLength)
	}
	return nil
}

func isWordRune(c rune) bool { return c == '_' || unicode.IsLetter(c) || unicode.IsDigit(c) }

// validateRequired checks that every field Azure requires is present and
// that each side names exactly one of: prefix, prefixes, application
// security groups (and not too many of the latter).
func validateRequired(id string, r Rule) *Error {
	required := []struct {
		param string
		set   bool
	}{
		{"Protocol", r.Protocol != ""},
		{"SourcePortRange", len(r.SourcePorts) > 0},
		{"DestinationPortRange", len(r.DestinationPorts) > 0},
		{"Access", r.Access != ""},
		{"Direction", r.Direction != ""},
	}
	for _, f := range required {
		if !f.set {
			return badRequest(id, CodeParameterMissing,
				"Required security rule parameter %s is missing for security rule with Id: %s.", f.param, id)
		}
	}
	for _, side := range []struct {
		name     string
		prefixes bool
		both     bool
		asgs     int
	}{
		{"Source", len(r.SourcePrefixes) > 0, r.BothSourcePrefixForms, r.SourceASGs},
		{"Destination", len(r.DestinationPrefixes) > 0, r.BothDestinationPrefixForms, r.DestinationASGs},
	} {
		forms := 0
		if side.prefixes || side.both {
			forms++
		}
		if side.both {
			forms++
		}
		if side.asgs > 0 {
			forms++
		}
		if forms != 1 {
			return badRequest(id, CodeParametersMissing,
				"Security rule with Id %s must specify a non empty value for exactly one of: %sAddressPrefixes, %sAddressPrefix, %sApplicationSecurityGroups.",
				id, side.name, side.name, side.name)
		}
		if side.asgs > MaxASGsPerRuleSide {
			return badRequest(id, CodeTooManyASGs,
				"A security rule may have up to %d Application Security Group in the source or destination fields. The requested configuration has %d in the %sApplicationSecurityGroups field.",
				MaxASGsPerRuleSide, side.asgs, side.name)
		}
	}
	return nil
}

// validateEnums checks protocol, direction and access. Azure compares them
// case-insensitively ("tcp" is accepted) and lists the allowed values when
// refusing one.
func validateEnums(id string, r Rule) *Error {
	if canonical(r.Protocol, protocols...) == "" {
		return badRequest(id, CodeInvalidProtocol,
			"Security rule has invalid Protocol. Value provided: %s Allowed values: Icmp,Tcp,Udp,Esp,Ah,*.", r.Protocol)
	}
	if canonical(r.Direction, directions...) == "" {
		return badRequest(id, CodeInvalidDirection,
			"Security rule has invalid Direction. Value provided: %s Allowed values: Inbound,Outbound.", r.Direction)
	}
	if canonical(r.Access, accesses...) == "" {
		return badRequest(id, CodeInvalidAccess,
			"Security rule has invalid Access. Value provided: %s Allowed values: Allow,Deny.", r.Access)
	}
	return nil
}

// validatePriority: the message follows the shape of Azure's other
// "invalid <field>" messages; its exact wording is unconfirmed.
func validatePriority(id string, r Rule) *Error {
	if r.Priority < MinPriority || r.Priority > MaxPriority {
		return badRequest(id, CodeInvalidPriority,
			"Security rule has invalid Priority. Value provided: %d Allowed values are from %d to %d.",
			r.Priority, MinPriority, MaxPriority)
	}
	return nil
}

func validateDescription(id string, r Rule) *Error {
	if n := len(utf16.Encode([]rune(r.Description))); n > MaxDescriptionLength {
		return badRequest(id, CodeInvalidDescription,
			"Security rule %s has invalid Description. The description is %d characters long; the maximum is %d.",
			id, n, MaxDescriptionLength)
	}
	return nil
}

// validateAddresses checks every prefix. "*" and service tags stand only
// alone in the singular field: in the plural field, even alone, Azure
// refuses them with SecurityRuleParameterContainsUnsupportedValue and names
// the singular parameter, as observed.
func validateAddresses(id string, r Rule) *Error {
	for _, side := range []struct {
		param    string
		prefixes []string
		plural   bool
	}{
		{"SourceAddressPrefix", r.SourcePrefixes, r.SourcePrefixesPlural},
		{"DestinationAddressPrefix", r.DestinationPrefixes, r.DestinationPrefixesPlural},
	} {
		for _, s := range side.prefixes {
			p, ok := parsePrefix(s)
			if !ok {
				return badRequest(id, CodeInvalidAddressPrefix,
					"Security rule %s has invalid Address prefix. Value provided: %s", id, s)
			}
			if p.kind != prefixIP && (side.plural || len(side.prefixes) > 1) {
				return badRequest(id, CodeUnsupportedValue,
					"Security rule parameter %s for rule with Id %s cannot specify existing VIRTUALNETWORK, INTERNET, AZURELOADBALANCER, '*' or system tags. Unsupported value used: %s.",
					side.param, id, s)
			}
		}
	}
	return nil
}

// validatePorts checks every port range. "*" is only valid in the singular
// field; in the plural field Azure does not take it.
func validatePorts(id string, r Rule) *Error {
	for _, side := range []struct {
		ports  []string
		plural bool
	}{
		{r.SourcePorts, r.SourcePortsPlural},
		{r.DestinationPorts, r.DestinationPortsPlural},
	} {
		for _, s := range side.ports {
			_, ok := parsePortRange(s)
			if !ok || (s == wildcard && (side.plural || len(side.ports) > 1)) {
				return badRequest(id, CodeInvalidPortRange,
					"Security rule has invalid Port range. Value provided: %s. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535.", s)
			}
		}
	}
	return nil
}

// validateFamilies refuses IPv4 and IPv6 prefixes in one rule, source and
// destination together. "*" and service tags belong to both families and
// mix with either.
func validateFamilies(id string, r Rule) *Error {
	var seen [3]bool
	for _, s := range append(r.SourcePrefixes[:len(r.SourcePrefixes):len(r.SourcePrefixes)], r.DestinationPrefixes...) {
		p, _ := parsePrefix(s)
		seen[p.family] = true
	}
	if seen[familyIPv4] && seen[familyIPv6] {
		return badRequest(id, CodeMixedAddressFamilies,
			"Resource %s contains IP addresses or prefixes that belong to different address families. All IP addresses or prefixes in the resource should belong to the same address family.", id)
	}
	return nil
}

// validateConflict refuses a priority already used in the same direction.
// Azure names the existing rule first and the rule being written second.
func validateConflict(id string, r Rule, others []Rule) *Error {
	for _, o := range others {
		if strings.EqualFold(o.Name, r.Name) {
			continue
		}
		if o.Priority == r.Priority && strings.EqualFold(o.Direction, r.Direction) {
			return badRequest(id, CodeConflict,
				"Security rule %s conflicts with rule %s. Rules cannot have the same Priority and Direction. To learn more, see aka.ms/nsgrules.",
				o.Name, r.Name)
		}
	}
	return nil
}

// ValidateLimits checks the NSG-wide limits on the resulting set of rules:
// at most MaxRules rules, and at most MaxAddressesOrPorts source prefixes,
// destination prefixes, source port ranges and destination port ranges,
// each counted separately across all rules.
func ValidateLimits(nsgID string, rules []Rule) *Error {
	if len(rules) > MaxRules {
		return badRequest(nsgID, CodeRuleCountLimit,
			"A security group cannot have more than %d security rules.", MaxRules)
	}
	counts := []struct {
		field string
		count func(Rule) int
	}{
		{"SourceAddressPrefixes", func(r Rule) int { return len(r.SourcePrefixes) }},
		{"DestinationAddressPrefixes", func(r Rule) int { return len(r.DestinationPrefixes) }},
		{"SourcePortRanges", func(r Rule) int { return len(r.SourcePorts) }},
		{"DestinationPortRanges", func(r Rule) int { return len(r.DestinationPorts) }},
	}
	for _, c := range counts {
		n := 0
		for _, r := range rules {
			n += c.count(r)
		}
		if n > MaxAddressesOrPorts {
			return badRequest(nsgID, CodeAddressesOrPortsLimit,
				"Network security group %s has %d %s. A security group cannot have more than %d %s as per the limit MaxSecurityRuleAddressesOrPortsPerSecurityGroup.",
				nsgID, n, c.field, MaxAddressesOrPorts, c.field)
		}
	}
	return nil
}
