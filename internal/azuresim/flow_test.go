package azuresim_test

import (
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// TestVerifyFlowTable writes rules through the SDK, as any client would, and
// asks flow verification a table of questions, IPv4 and IPv6, through a
// subnet NSG and a NIC NSG.
func TestVerifyFlowTable(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 3)

	udpRule := func(name string, priority int32, source, port string) *armnetwork.SecurityRule {
		r := tcpRule(name, priority, armnetwork.SecurityRuleAccessAllow, source, port)
		r.Properties.Protocol = to.Ptr(armnetwork.SecurityRuleProtocolUDP)
		return r
	}
	subnet := createNSG(t, c, "nsg-flow-subnet",
		tcpRule("allow-admins-v4", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22"),
		tcpRule("allow-admins-v6", 210, armnetwork.SecurityRuleAccessAllow, "2001:db8:aa::/48", "22"),
		tcpRule("allow-web", 300, armnetwork.SecurityRuleAccessAllow, "Internet", "443"),
		udpRule("allow-dns-range", 310, "Internet", "5000-5010"),
	)
	nic := createNSG(t, c, "nsg-flow-nic",
		tcpRule("deny-one-admin", 100, armnetwork.SecurityRuleAccessDeny, "203.0.113.66/32", "*"),
		tcpRule("allow-ssh", 200, armnetwork.SecurityRuleAccessAllow, "*", "22"),
		tcpRule("allow-web", 300, armnetwork.SecurityRuleAccessAllow, "*", "443"),
		udpRule("allow-udp", 310, "*", "*"),
	)
	path := []string{*subnet.ID, *nic.ID}

	tests := []struct {
		proto, src, dst string
		port            int
		allowed         bool
		nsg             string // the deciding NSG
		rule            string
	}{
		{"Tcp", "203.0.113.7", "10.0.0.4", 22, true, *nic.ID, "allow-ssh"},
		{"Tcp", "203.0.113.66", "10.0.0.4", 22, false, *nic.ID, "deny-one-admin"},
		{"Tcp", "198.51.100.9", "10.0.0.4", 22, false, *subnet.ID, "DenyAllInBound"},
		{"Tcp", "198.51.100.9", "10.0.0.4", 443, true, *nic.ID, "allow-web"},
		{"Tcp", "203.0.113.7", "10.0.0.4", 3389, false, *subnet.ID, "DenyAllInBound"},
		{"Udp", "198.51.100.9", "10.0.0.4", 5005, true, *nic.ID, "allow-udp"},
		{"Udp", "198.51.100.9", "10.0.0.4", 5011, false, *subnet.ID, "DenyAllInBound"},
		{"Tcp", "198.51.100.9", "10.0.0.4", 5005, false, *subnet.ID, "DenyAllInBound"},
		{"Tcp", "2001:db8:aa:1::7", "fd00::4", 22, true, *nic.ID, "allow-ssh"},
		{"Tcp", "2001:db8:bb::7", "fd00::4", 22, false, *subnet.ID, "DenyAllInBound"},
		{"Tcp", "::ffff:203.0.113.66", "10.0.0.4", 22, false, *nic.ID, "deny-one-admin"},
		// Inside the virtual network, Azure's AllowVnetInBound lets everything in.
		{"Tcp", "10.0.1.5", "10.0.0.4", 3389, true, *nic.ID, "AllowVnetInBound"},
		{"Tcp", "168.63.129.16", "10.0.0.4", 80, true, *nic.ID, "AllowVnetInBound"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s_%s_%d", tc.src, tc.proto, tc.port), func(t *testing.T) {
			v, err := srv.VerifyFlow(azuresim.Flow{NSGIDs: path, Protocol: tc.proto, Source: tc.src,
				Destination: tc.dst, DestinationPort: tc.port})
			if err != nil {
				t.Fatal(err)
			}
			if v.Allowed != tc.allowed || v.NSGID != tc.nsg || v.RuleName != tc.rule {
				t.Errorf("got allowed=%v by %s in %s, want allowed=%v by %s in %s",
					v.Allowed, v.RuleName, v.NSGID, tc.allowed, tc.rule, tc.nsg)
			}
		})
	}
}
