package nsgrules

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

const testNSG = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg"

// validRule is a rule Azure accepts; each case below changes one thing.
func validRule() Rule {
	return Rule{
		Name: "jit-web-g-1", Priority: 150, Direction: "Inbound", Access: "Allow", Protocol: "Tcp",
		SourcePrefixes: []string{"203.0.113.7/32"}, DestinationPrefixes: []string{"10.0.0.4"},
		SourcePorts: []string{"*"}, DestinationPorts: []string{"22"},
		Description: "jit:v1 grant=1",
	}
}

func TestValidateRule(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Rule)
		code   string // "" means Azure accepts the rule
		want   string // substring of the message
	}{
		{"valid", func(*Rule) {}, "", ""},

		// Names.
		{"name 80 chars", func(r *Rule) { r.Name = strings.Repeat("a", 80) }, "", ""},
		{"name 81 chars", func(r *Rule) { r.Name = strings.Repeat("a", 81) }, CodeInvalidResourceName, strings.Repeat("a", 81)},
		{"name empty", func(r *Rule) { r.Name = "" }, CodeInvalidResourceName, "is invalid"},
		{"name ends with underscore", func(r *Rule) { r.Name = "rule_" }, "", ""},
		{"name ends with dot", func(r *Rule) { r.Name = "rule." }, CodeInvalidResourceName, "rule."},
		{"name starts with dash", func(r *Rule) { r.Name = "-rule" }, CodeInvalidResourceName, "-rule"},
		{"name with slash", func(r *Rule) { r.Name = "a/b" }, CodeInvalidResourceName, "a/b"},

		// Required fields.
		{"protocol missing", func(r *Rule) { r.Protocol = "" }, CodeParameterMissing, "parameter Protocol is missing"},
		{"source port missing", func(r *Rule) { r.SourcePorts = nil }, CodeParameterMissing, "SourcePortRange"},
		{"destination port missing", func(r *Rule) { r.DestinationPorts = nil }, CodeParameterMissing, "DestinationPortRange"},
		{"access missing", func(r *Rule) { r.Access = "" }, CodeParameterMissing, "Access"},
		{"direction missing", func(r *Rule) { r.Direction = "" }, CodeParameterMissing, "Direction"},
		{"source prefix missing", func(r *Rule) { r.SourcePrefixes = nil }, CodeParametersMissing, "exactly one of: SourceAddressPrefixes"},
		{"destination prefix missing", func(r *Rule) { r.DestinationPrefixes = nil }, CodeParametersMissing, "DestinationApplicationSecurityGroups"},
		{"source given by ASG only", func(r *Rule) { r.SourcePrefixes, r.SourceASGs = nil, 1 }, "", ""},
		{"source prefix and ASG", func(r *Rule) { r.SourceASGs = 1 }, CodeParametersMissing, "exactly one of"},
		{"both source forms", func(r *Rule) { r.BothSourcePrefixForms = true }, CodeParametersMissing, "SourceAddressPrefix,"},
		{"both destination forms", func(r *Rule) { r.BothDestinationPrefixForms = true }, CodeParametersMissing, "DestinationAddressPrefix,"},
		{"10 source ASGs", func(r *Rule) { r.SourcePrefixes, r.SourceASGs = nil, 10 }, "", ""},
		{"11 destination ASGs", func(r *Rule) { r.DestinationPrefixes, r.DestinationASGs = nil, 11 }, CodeTooManyASGs, "has 11 in the DestinationApplicationSecurityGroups"},

		// Enums, case-insensitive.
		{"protocol lower case", func(r *Rule) { r.Protocol = "tcp" }, "", ""},
		{"protocol any", func(r *Rule) { r.Protocol = "*" }, "", ""},
		{"protocol Esp", func(r *Rule) { r.Protocol = "ESP" }, "", ""},
		{"protocol Icmpv6", func(r *Rule) { r.Protocol = "Icmpv6" }, CodeInvalidProtocol, "Value provided: Icmpv6"},
		{"protocol Any", func(r *Rule) { r.Protocol = "Any" }, CodeInvalidProtocol, "Allowed values: Icmp,Tcp,Udp,Esp,Ah,*"},
		{"direction lower case", func(r *Rule) { r.Direction = "outbound" }, "", ""},
		{"direction In", func(r *Rule) { r.Direction = "In" }, CodeInvalidDirection, "Value provided: In"},
		{"access lower case", func(r *Rule) { r.Access = "deny" }, "", ""},
		{"access Block", func(r *Rule) { r.Access = "Block" }, CodeInvalidAccess, "Value provided: Block"},

		// Priority.
		{"priority 100", func(r *Rule) { r.Priority = 100 }, "", ""},
		{"priority 4096", func(r *Rule) { r.Priority = 4096 }, "", ""},
		{"priority 99", func(r *Rule) { r.Priority = 99 }, CodeInvalidPriority, "Value provided: 99 Allowed values are from 100 to 4096"},
		{"priority 4097", func(r *Rule) { r.Priority = 4097 }, CodeInvalidPriority, "4097"},
		{"priority 65000", func(r *Rule) { r.Priority = 65000 }, CodeInvalidPriority, "65000"},

		// Description, counted in UTF-16 code units.
		{"description 140", func(r *Rule) { r.Description = strings.Repeat("x", 140) }, "", ""},
		{"description 141", func(r *Rule) { r.Description = strings.Repeat("x", 141) }, CodeInvalidDescription, "141"},
		{"description 140 runes of 2 bytes", func(r *Rule) { r.Description = strings.Repeat("é", 140) }, "", ""},
		{"description 71 astral runes", func(r *Rule) { r.Description = strings.Repeat("😀", 71) }, CodeInvalidDescription, "142"},

		// Address prefixes.
		{"ipv4 cidr", func(r *Rule) { r.SourcePrefixes = []string{"198.51.100.0/24"} }, "", ""},
		{"ipv4 any cidr", func(r *Rule) { r.SourcePrefixes = []string{"0.0.0.0/0"} }, "", ""},
		{"host bits set", func(r *Rule) { r.SourcePrefixes = []string{"10.0.0.1/24"} }, CodeInvalidAddressPrefix, "Value provided: 10.0.0.1/24"},
		{"prefix too long", func(r *Rule) { r.SourcePrefixes = []string{"10.0.0.0/33"} }, CodeInvalidAddressPrefix, "10.0.0.0/33"},
		{"not an address", func(r *Rule) { r.SourcePrefixes = []string{"any"} }, CodeInvalidAddressPrefix, "Value provided: any"},
		{"comma list in singular", func(r *Rule) { r.SourcePrefixes = []string{"10.0.0.1,10.0.0.2"} }, CodeInvalidAddressPrefix, "10.0.0.1,10.0.0.2"},
		{"address range", func(r *Rule) { r.SourcePrefixes = []string{"10.0.0.1-10.0.0.9"} }, CodeInvalidAddressPrefix, "10.0.0.1-10.0.0.9"},
		{"classic tag spelling", func(r *Rule) { r.SourcePrefixes = []string{"VIRTUAL_NETWORK"} }, CodeInvalidAddressPrefix, "VIRTUAL_NETWORK"},
		{"ipv6 zone", func(r *Rule) {
			r.SourcePrefixes, r.DestinationPrefixes = []string{"fe80::1%eth0"}, []string{"*"}
		}, CodeInvalidAddressPrefix, "fe80::1%eth0"},
		{"ipv6 rule", func(r *Rule) {
			r.SourcePrefixes, r.DestinationPrefixes = []string{"2001:db8::/32"}, []string{"fd00::4"}
		}, "", ""},
		{"ipv6 host bits", func(r *Rule) {
			r.SourcePrefixes, r.DestinationPrefixes = []string{"2001:db8::1/64"}, []string{"fd00::4"}
		}, CodeInvalidAddressPrefix, "2001:db8::1/64"},
		{"plural prefixes", func(r *Rule) {
			r.SourcePrefixes, r.SourcePrefixesPlural = []string{"198.51.100.0/24", "203.0.113.7"}, true
		}, "", ""},
		{"wildcard singular", func(r *Rule) { r.SourcePrefixes = []string{"*"} }, "", ""},
		{"wildcard plural", func(r *Rule) {
			r.SourcePrefixes, r.SourcePrefixesPlural = []string{"*"}, true
		}, CodeUnsupportedValue, "parameter SourceAddressPrefix for rule with Id " + testNSG + "/securityRules/jit-web-g-1 cannot specify existing VIRTUALNETWORK, INTERNET, AZURELOADBALANCER, '*' or system tags. Unsupported value used: *."},
		{"tag singular", func(r *Rule) { r.SourcePrefixes = []string{"Internet"} }, "", ""},
		{"tag singular lower case", func(r *Rule) { r.SourcePrefixes = []string{"virtualnetwork"} }, "", ""},
		{"tag in plural list", func(r *Rule) {
			r.DestinationPrefixes, r.DestinationPrefixesPlural = []string{"10.0.0.4", "VirtualNetwork"}, true
		}, CodeUnsupportedValue, "DestinationAddressPrefix for rule with Id"},
		{"regional tag", func(r *Rule) { r.DestinationPrefixes = []string{"Storage.WestEurope"} }, "", ""},
		{"dotted tag", func(r *Rule) { r.DestinationPrefixes = []string{"AzureFrontDoor.Backend"} }, "", ""},
		{"regional default tag", func(r *Rule) { r.SourcePrefixes = []string{"Internet.WestEurope"} }, CodeInvalidAddressPrefix, "Internet.WestEurope"},
		{"regional tag without region", func(r *Rule) { r.DestinationPrefixes = []string{"Storage."} }, CodeInvalidAddressPrefix, "Storage."},
		{"unknown tag", func(r *Rule) { r.DestinationPrefixes = []string{"NoSuchService"} }, CodeInvalidAddressPrefix, "NoSuchService"},
		{"regional tag bad region", func(r *Rule) { r.DestinationPrefixes = []string{"Storage.West-Europe"} }, CodeInvalidAddressPrefix, "Storage.West-Europe"},

		// Address families, source and destination together.
		{"ipv4 to ipv6", func(r *Rule) { r.DestinationPrefixes = []string{"fd00::4"} }, CodeMixedAddressFamilies, "belong to different address families"},
		{"mixed plural", func(r *Rule) {
			r.SourcePrefixes, r.SourcePrefixesPlural = []string{"203.0.113.7", "2001:db8::7"}, true
		}, CodeMixedAddressFamilies, testNSG + "/securityRules/jit-web-g-1"},
		{"ipv6 to wildcard", func(r *Rule) { r.SourcePrefixes, r.DestinationPrefixes = []string{"2001:db8::7"}, []string{"*"} }, "", ""},
		{"ipv6 to tag", func(r *Rule) {
			r.SourcePrefixes, r.DestinationPrefixes = []string{"2001:db8::7"}, []string{"VirtualNetwork"}
		}, "", ""},

		// Ports.
		{"port range", func(r *Rule) { r.DestinationPorts = []string{"3389-3390"} }, "", ""},
		{"port 0", func(r *Rule) { r.DestinationPorts = []string{"0"} }, "", ""},
		{"port 65535", func(r *Rule) { r.DestinationPorts = []string{"65535"} }, "", ""},
		{"port 65536", func(r *Rule) { r.DestinationPorts = []string{"65536"} }, CodeInvalidPortRange, "Value provided: 65536. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535."},
		{"port range reversed", func(r *Rule) { r.DestinationPorts = []string{"23-22"} }, CodeInvalidPortRange, "23-22"},
		{"port comma list", func(r *Rule) { r.DestinationPorts = []string{"22,3389"} }, CodeInvalidPortRange, "22,3389"},
		{"port negative", func(r *Rule) { r.SourcePorts = []string{"-1"} }, CodeInvalidPortRange, "-1"},
		{"port with spaces", func(r *Rule) { r.DestinationPorts = []string{"22 - 23"} }, CodeInvalidPortRange, "22 - 23"},
		{"port any", func(r *Rule) { r.DestinationPorts = []string{"Any"} }, CodeInvalidPortRange, "Any"},
		{"plural ports", func(r *Rule) {
			r.DestinationPorts, r.DestinationPortsPlural = []string{"22", "3389-3390"}, true
		}, "", ""},
		{"wildcard in plural ports", func(r *Rule) {
			r.DestinationPorts, r.DestinationPortsPlural = []string{"*"}, true
		}, CodeInvalidPortRange, "Value provided: *."},
		{"icmp with ports", func(r *Rule) { r.Protocol = "Icmp" }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRule()
			tt.change(&r)
			err := ValidateRule(testNSG, r, nil)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("ValidateRule() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateRule() = nil, want %s", tt.code)
			}
			if err.Code != tt.code || err.Status != http.StatusBadRequest {
				t.Fatalf("ValidateRule() = %d %v, want 400 %s", err.Status, err, tt.code)
			}
			if !strings.Contains(err.Message, tt.want) {
				t.Errorf("message %q does not contain %q", err.Message, tt.want)
			}
			if err.Target != RuleID(testNSG, r.Name) {
				t.Errorf("target = %q, want the rule id", err.Target)
			}
		})
	}
}

func TestValidateRuleConflict(t *testing.T) {
	existing := validRule()
	existing.Name = "existing"

	tests := []struct {
		name   string
		change func(*Rule)
		others []Rule
		fails  bool
	}{
		{"same priority and direction", func(*Rule) {}, []Rule{existing}, true},
		{"direction differs only in case", func(r *Rule) { r.Direction = "inbound" }, []Rule{existing}, true},
		{"same priority other direction", func(r *Rule) { r.Direction = "Outbound" }, []Rule{existing}, false},
		{"other priority", func(r *Rule) { r.Priority = 151 }, []Rule{existing}, false},
		{"same name is the rule itself", func(r *Rule) { r.Name = "EXISTING" }, []Rule{existing}, false},
		{"no other rules", func(*Rule) {}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRule()
			tt.change(&r)
			err := ValidateRule(testNSG, r, tt.others)
			if !tt.fails {
				if err != nil {
					t.Fatalf("ValidateRule() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Code != CodeConflict {
				t.Fatalf("ValidateRule() = %v, want %s", err, CodeConflict)
			}
			want := "Security rule existing conflicts with rule jit-web-g-1. Rules cannot have the same Priority and Direction."
			if !strings.HasPrefix(err.Message, want) {
				t.Errorf("message = %q, want prefix %q", err.Message, want)
			}
		})
	}
}

// A rule wrong in itself is reported as such even when it also conflicts.
func TestValidateRuleReportsOwnFaultBeforeConflict(t *testing.T) {
	r := validRule()
	r.DestinationPorts = []string{"70000"}
	other := validRule()
	other.Name = "other"
	if err := ValidateRule(testNSG, r, []Rule{other}); err == nil || err.Code != CodeInvalidPortRange {
		t.Fatalf("ValidateRule() = %v, want %s", err, CodeInvalidPortRange)
	}
}

func TestValidateLimits(t *testing.T) {
	rules := func(n int, change func(*Rule)) []Rule {
		rs := make([]Rule, n)
		for i := range rs {
			rs[i] = validRule()
			rs[i].Name = fmt.Sprintf("r%d", i)
			change(&rs[i])
		}
		return rs
	}
	prefixes := func(n int) []string {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
		}
		return ps
	}
	ports := func(n int) []string {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = fmt.Sprint(1000 + i)
		}
		return ps
	}
	tests := []struct {
		name  string
		rules []Rule
		code  string
		want  string
	}{
		{"none", nil, "", ""},
		{"1000 rules", rules(1000, func(*Rule) {}), "", ""},
		{"1001 rules", rules(1001, func(*Rule) {}), CodeRuleCountLimit, "cannot have more than 1000 security rules"},
		{"4000 source prefixes", rules(4, func(r *Rule) { r.SourcePrefixes = prefixes(1000) }), "", ""},
		{"4004 source prefixes", rules(4, func(r *Rule) { r.SourcePrefixes = prefixes(1001) }), CodeAddressesOrPortsLimit,
			"Network security group " + testNSG + " has 4004 SourceAddressPrefixes. A security group cannot have more than 4000 SourceAddressPrefixes as per the limit MaxSecurityRuleAddressesOrPortsPerSecurityGroup."},
		{"source and destination counted apart", rules(4, func(r *Rule) {
			r.SourcePrefixes, r.DestinationPrefixes = prefixes(1000), prefixes(1000)
		}), "", ""},
		{"4004 destination prefixes", rules(4, func(r *Rule) { r.DestinationPrefixes = prefixes(1001) }), CodeAddressesOrPortsLimit, "4004 DestinationAddressPrefixes"},
		{"4004 destination ports", rules(4, func(r *Rule) { r.DestinationPorts = ports(1001) }), CodeAddressesOrPortsLimit, "4004 DestinationPortRanges"},
		{"4004 source ports", rules(4, func(r *Rule) { r.SourcePorts = ports(1001) }), CodeAddressesOrPortsLimit, "4004 SourcePortRanges"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateLimits(testNSG, tt.rules)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("ValidateLimits() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Code != tt.code || err.Status != http.StatusBadRequest {
				t.Fatalf("ValidateLimits() = %v, want 400 %s", err, tt.code)
			}
			if !strings.Contains(err.Message, tt.want) {
				t.Errorf("message %q does not contain %q", err.Message, tt.want)
			}
			if err.Target != testNSG {
				t.Errorf("target = %q, want the NSG id", err.Target)
			}
		})
	}
}

func TestDefaultRulesAreValidShapes(t *testing.T) {
	defaults := DefaultRules()
	if len(defaults) != 6 {
		t.Fatalf("len(DefaultRules()) = %d, want 6", len(defaults))
	}
	for _, r := range defaults {
		// Default rules sit outside the user range, so only the priority
		// check may refuse them.
		if err := ValidateRule(testNSG, r, nil); err == nil || err.Code != CodeInvalidPriority {
			t.Errorf("%s: ValidateRule() = %v, want only %s", r.Name, err, CodeInvalidPriority)
		}
	}
	// Callers may modify what they get back without changing later calls.
	defaults[0].SourcePrefixes[0] = "10.0.0.0/8"
	if got := DefaultRules()[0].SourcePrefixes[0]; got != "VirtualNetwork" {
		t.Errorf("DefaultRules() shares state: %q", got)
	}
}

func TestErrorString(t *testing.T) {
	err := ValidateRule(testNSG, Rule{Name: "x"}, nil)
	if got, want := err.Error(), CodeParameterMissing+": Required security rule parameter Protocol is missing for security rule with Id: "+testNSG+"/securityRules/x."; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
