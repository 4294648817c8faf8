package azure

import (
	"errors"
	"reflect"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

func TestRuleRoundTrip(t *testing.T) {
	rules := []jit.SecurityRule{
		{
			Name: "jit-web-g-1", Priority: 150, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
			SourcePrefixes: []string{"203.0.113.7/32"}, SourcePorts: []string{"*"},
			DestinationPrefixes: []string{"10.0.0.4", "10.0.0.5"}, DestinationPorts: []string{"22", "3389"},
			Description: "jit:v1 grant=1 exp=1700000000 by=alice",
		},
		{
			Name: "jit-web-deny-udp", Priority: 199, Direction: jit.Outbound, Access: jit.Deny, Protocol: jit.ProtocolUDP,
			SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"},
			DestinationPrefixes: []string{"VirtualNetwork"}, DestinationPorts: []string{"1000-2000"},
		},
	}
	for _, r := range rules {
		a := ruleToARM(r)
		got := ruleFromARM(&a)
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", r.Name, got, r)
		}
	}
}

func TestRuleToARMSingularAndPlural(t *testing.T) {
	a := ruleToARM(jit.SecurityRule{
		Name: "r", SourcePrefixes: []string{"1.2.3.4"}, DestinationPorts: []string{"22", "80"},
	})
	p := a.Properties
	if p.SourceAddressPrefix == nil || *p.SourceAddressPrefix != "1.2.3.4" || p.SourceAddressPrefixes != nil {
		t.Errorf("one source prefix: got singular %v plural %v", p.SourceAddressPrefix, p.SourceAddressPrefixes)
	}
	if p.DestinationPortRange != nil || len(p.DestinationPortRanges) != 2 {
		t.Errorf("two ports: got singular %v plural %v", p.DestinationPortRange, p.DestinationPortRanges)
	}
	if p.SourcePortRange != nil || p.SourcePortRanges != nil || p.Description != nil || p.Access != nil {
		t.Errorf("unset fields were sent: %+v", p)
	}
}

func TestRuleFromARMApplicationSecurityGroups(t *testing.T) {
	r := ruleFromARM(&armnetwork.SecurityRule{
		Name: ptr("asg"),
		Properties: &armnetwork.SecurityRulePropertiesFormat{
			DestinationApplicationSecurityGroups: []*armnetwork.ApplicationSecurityGroup{{ID: ptr("/subscriptions/x/asg")}},
			SourceAddressPrefix:                  ptr("*"),
			// Azure sometimes sends both shapes with the singular one empty.
			DestinationPortRange:  ptr(""),
			DestinationPortRanges: []*string{ptr("22")},
		},
	})
	if !r.UsesApplicationSecurityGroups {
		t.Error("ASG reference lost")
	}
	if !reflect.DeepEqual(r.DestinationPorts, []string{"22"}) || !reflect.DeepEqual(r.SourcePrefixes, []string{"*"}) {
		t.Errorf("got ports %q prefixes %q", r.DestinationPorts, r.SourcePrefixes)
	}
	if got := ruleFromARM(&armnetwork.SecurityRule{Name: ptr("bare")}); got.Name != "bare" {
		t.Errorf("rule without properties: %+v", got)
	}
}

func TestParseNSGID(t *testing.T) {
	const id = "/subscriptions/" + testSub + "/resourceGroups/rg-1/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
	got, err := ParseNSGID(id)
	if err != nil {
		t.Fatal(err)
	}
	want := NSGID{SubscriptionID: testSub, ResourceGroup: "rg-1", Name: "nsg-web"}
	if got != want || got.String() != id {
		t.Errorf("ParseNSGID = %+v (%s), want %+v", got, got, want)
	}
	lower := "/subscriptions/" + testSub + "/resourcegroups/rg-1/providers/microsoft.network/networksecuritygroups/nsg-web"
	if got, err := ParseNSGID(lower); err != nil || got != want {
		t.Errorf("lower-case id: %+v, %v", got, err)
	}

	for _, bad := range []string{
		"",
		"nsg-web",
		"/subscriptions/" + testSub + "/resourceGroups/rg-1",
		"/subscriptions/" + testSub + "/resourceGroups/rg-1/providers/Microsoft.Network/virtualNetworks/vnet",
		id + "/securityRules/r1",
	} {
		if _, err := ParseNSGID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseNSGID(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
