package azuresim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

func managementClient(t *testing.T, srv *azuresim.Server) *armnetwork.ManagementClient {
	t.Helper()
	c, err := armnetwork.NewManagementClient(srv.SubscriptionID(), secretCredential(t, srv),
		&arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cloudConfig(srv), Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// adminRule is an inbound TCP admin rule from sources (IP prefixes) to
// ports.
func adminRule(name string, prio int32, access string, sources []string, ports ...string) azuresim.AdminRule {
	r := azuresim.AdminRule{Name: name, Priority: prio, Direction: "Inbound", Access: access, Protocol: "Tcp",
		Destinations: []azuresim.AddressPrefixItem{{AddressPrefix: "*", AddressPrefixType: "IPPrefix"}}, DestinationPortRanges: ports}
	for _, s := range sources {
		r.Sources = append(r.Sources, azuresim.AddressPrefixItem{AddressPrefix: s, AddressPrefixType: "IPPrefix"})
	}
	return r
}

// appVNetID is the id of vnet-app, the virtual network the tests create.
func (n vmNetwork) appVNetID() string {
	return "/subscriptions/" + n.srv.SubscriptionID() + "/resourceGroups/" + testRG + "/providers/Microsoft.Network/virtualNetworks/vnet-app"
}

// adminFixture is a VM behind a subnet NSG and a NIC NSG, in vnet-app:
// the subnet NSG holds a JIT-style grant for 203.0.113.7 on 22, the NIC NSG
// allows 22 from anywhere; everything else meets DenyAllInBound.
type adminFixture struct {
	vmNetwork
	subnetNSG, nicNSG, nic, vm, vnet, ip string
}

func newAdminFixture(t *testing.T, srv *azuresim.Server) adminFixture {
	t.Helper()
	n := newVMNetwork(t, srv)
	ctx := t.Context()
	subnetNSG := createNSG(t, n.networkClients, "nsg-subnet",
		tcpRule("jit-web-g-1", 150, armnetwork.SecurityRuleAccessAllow, "203.0.113.7/32", "22"))
	nicNSG := createNSG(t, n.networkClients, "nsg-nic",
		tcpRule("allow-ssh", 200, armnetwork.SecurityRuleAccessAllow, "*", "22"),
		tcpRule("allow-https", 300, armnetwork.SecurityRuleAccessAllow, "*", "443"))
	if _, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16", subnet("web", "10.10.1.0/24", *subnetNSG.ID)); err != nil {
		t.Fatal(err)
	}
	nic, err := n.createNIC(ctx, "nic-web", nicSpec{subnetID: n.appSubnetID("web"), nsgID: *nicNSG.ID})
	if err != nil {
		t.Fatal(err)
	}
	return adminFixture{vmNetwork: n, subnetNSG: *subnetNSG.ID, nicNSG: *nicNSG.ID, nic: *nic.ID,
		vm: createVM(t, srv, "vm-web", *nic.ID), vnet: n.appVNetID(), ip: ipOf(nic)}
}

func (a adminFixture) verify(t *testing.T, src string, port int) azuresim.Verdict {
	t.Helper()
	v, err := a.srv.VerifyFlow(azuresim.Flow{NetworkInterfaceID: a.nic, Protocol: "Tcp", Source: src, DestinationPort: port})
	if err != nil {
		t.Fatalf("verify flow from %s to %d: %v", src, port, err)
	}
	return v
}

// ipFlowVerify asks Network Watcher, through armnetwork, about an inbound
// TCP flow from src to the VM's port.
func (a adminFixture) ipFlowVerify(t *testing.T, src string, port int) armnetwork.VerificationIPFlowResult {
	t.Helper()
	ctx := t.Context()
	p, err := a.watchers.BeginVerifyIPFlow(ctx, "NetworkWatcherRG", "NetworkWatcher_westeurope", armnetwork.VerificationIPFlowParameters{
		TargetResourceID: to.Ptr(a.vm),
		Direction:        to.Ptr(armnetwork.DirectionInbound),
		Protocol:         to.Ptr(armnetwork.IPFlowProtocolTCP),
		LocalIPAddress:   to.Ptr(a.ip), LocalPort: to.Ptr(fmt.Sprint(port)),
		RemoteIPAddress: to.Ptr(src), RemotePort: to.Ptr("50000"),
	}, nil)
	if err != nil {
		t.Fatalf("begin verify IP flow: %v", err)
	}
	resp, err := p.PollUntilDone(ctx, pollOpts)
	if err != nil {
		t.Fatalf("verify IP flow: %v", err)
	}
	return resp.VerificationIPFlowResult
}

// Admin rules come before NSGs: AlwaysAllow opens what the NSGs deny, Deny
// closes what they allow (a JIT grant included), Allow leaves the NSGs to
// decide, and among admin rules the lowest priority number wins.
func TestAdminRulesBeforeNSGs(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	a := newAdminFixture(t, srv)
	set := func(rules ...azuresim.AdminRule) {
		t.Helper()
		if err := srv.SetAdminRules(a.vnet, rules); err != nil {
			t.Fatal(err)
		}
	}
	grantee, outsider := "203.0.113.7", "198.51.100.1"

	if v := a.verify(t, grantee, 22); !v.Allowed || v.DecidedBy != azuresim.DecidedByNSG || v.RuleName != "allow-ssh" || v.AdminRule != nil {
		t.Fatalf("no admin rules, grantee: %+v", v)
	}

	set(adminRule("always-ssh", 100, "AlwaysAllow", []string{"*"}, "22"))
	v := a.verify(t, outsider, 22)
	if !v.Allowed || v.DecidedBy != azuresim.DecidedByAdminRule || v.RuleName != "admin:always-ssh" || v.NSGID != "" || v.Priority != 100 ||
		v.AdminRule == nil || v.AdminRule.Access != "AlwaysAllow" || !strings.HasSuffix(v.AdminRule.ID, "/rules/always-ssh") {
		t.Errorf("AlwaysAllow vs the NSG deny: %+v", v)
	}
	if v := a.verify(t, outsider, 3389); v.Allowed || v.RuleName != "DenyAllInBound" || v.AdminRule != nil {
		t.Errorf("AlwaysAllow on 22 leaves 3389 to the NSGs: %+v", v)
	}

	set(adminRule("deny-ssh", 100, "Deny", nil, "22"))
	if v := a.verify(t, grantee, 22); v.Allowed || v.DecidedBy != azuresim.DecidedByAdminRule || v.RuleName != "admin:deny-ssh" {
		t.Errorf("Deny vs the JIT grant: %+v", v)
	}

	set(adminRule("allow-ssh-office", 100, "Allow", []string{"203.0.113.0/24", "198.51.100.0/24"}, "22"))
	if v := a.verify(t, grantee, 22); !v.Allowed || v.DecidedBy != azuresim.DecidedByNSG || v.RuleName != "allow-ssh" ||
		v.AdminRule == nil || v.AdminRule.Access != "Allow" {
		t.Errorf("Allow defers, grantee: %+v", v)
	}
	if v := a.verify(t, outsider, 22); v.Allowed || v.NSGID != a.subnetNSG || v.RuleName != "DenyAllInBound" {
		t.Errorf("Allow defers, outsider: %+v", v)
	}

	set(adminRule("always-late", 300, "AlwaysAllow", nil, "22"), adminRule("deny-first", 200, "Deny", nil, "22"))
	if v := a.verify(t, outsider, 22); v.Allowed || v.RuleName != "admin:deny-first" {
		t.Errorf("Deny at 200 before AlwaysAllow at 300: %+v", v)
	}
	set(adminRule("always-first", 150, "AlwaysAllow", nil, "22"), adminRule("deny-late", 200, "Deny", nil, "22"))
	if v := a.verify(t, outsider, 22); !v.Allowed || v.RuleName != "admin:always-first" {
		t.Errorf("AlwaysAllow at 150 before Deny at 200: %+v", v)
	}

	// A flow given by NSG ids has admin rules only with a virtual network.
	byNSG := azuresim.Flow{NSGIDs: []string{a.subnetNSG, a.nicNSG}, Protocol: "Tcp", Source: outsider, Destination: a.ip, DestinationPort: 22}
	if v, err := srv.VerifyFlow(byNSG); err != nil || v.Allowed || v.AdminRule != nil {
		t.Errorf("by NSG ids without a virtual network: %+v %v", v, err)
	}
	byNSG.VirtualNetworkID = a.vnet
	if v, err := srv.VerifyFlow(byNSG); err != nil || !v.Allowed || v.RuleName != "admin:always-first" {
		t.Errorf("by NSG ids with the virtual network: %+v %v", v, err)
	}
	if v, err := srv.VerifyFlow(azuresim.Flow{VirtualNetworkID: a.vnet, Protocol: "Tcp", Source: outsider, Destination: a.ip, DestinationPort: 443}); err != nil || !v.Allowed || v.DecidedBy != "" {
		t.Errorf("virtual network only, no admin match: %+v %v", v, err)
	}
	set()
	if v := a.verify(t, outsider, 22); v.Allowed || v.AdminRule != nil {
		t.Errorf("admin rules removed: %+v", v)
	}
}

// The list API pages with skipToken and answers Azure's shapes, which the
// SDK decodes into EffectiveSecurityAdminRule.
func TestListEffectiveSecurityAdminRules(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	n := newVMNetwork(t, srv)
	ctx := t.Context()
	if _, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16", subnet("web", "10.10.1.0/24", "")); err != nil {
		t.Fatal(err)
	}
	var rules []azuresim.AdminRule
	for i := range 5 {
		r := adminRule(fmt.Sprintf("rule-%d", i), int32(100+i), []string{"Allow", "Deny", "AlwaysAllow"}[i%3], []string{"10.0.0.0/8"}, "22", "3389-3390")
		r.ConfigurationDescription, r.RuleCollectionDescription = "baseline", "ssh"
		rules = append(rules, r)
	}
	rules[4].Sources = []azuresim.AddressPrefixItem{{AddressPrefix: "Internet", AddressPrefixType: "ServiceTag"}}
	if err := srv.SetAdminRules(n.appVNetID(), rules); err != nil {
		t.Fatal(err)
	}
	mc := managementClient(t, srv)
	var got []*armnetwork.EffectiveSecurityAdminRule
	var token *string
	pages := 0
	for {
		resp, err := mc.ListNetworkManagerEffectiveSecurityAdminRules(ctx, testRG, "vnet-app", armnetwork.QueryRequestOptions{SkipToken: token},
			&armnetwork.ManagementClientListNetworkManagerEffectiveSecurityAdminRulesOptions{Top: to.Ptr[int32](2)})
		if err != nil {
			t.Fatalf("list page %d: %v", pages, err)
		}
		pages++
		if len(resp.Value) > 2 {
			t.Fatalf("page of %d with $top 2", len(resp.Value))
		}
		for _, v := range resp.Value {
			r, ok := v.(*armnetwork.EffectiveSecurityAdminRule)
			if !ok {
				t.Fatalf("rule decoded as %T, want *EffectiveSecurityAdminRule (kind Custom)", v)
			}
			got = append(got, r)
		}
		if token = resp.SkipToken; token == nil {
			break
		}
	}
	if pages != 3 || len(got) != 5 {
		t.Fatalf("%d rules in %d pages, want 5 in 3", len(got), pages)
	}
	r := got[2]
	p := r.Properties
	if *r.Kind != armnetwork.EffectiveAdminRuleKindCustom || !strings.HasSuffix(*r.ID, "/rules/rule-2") || *r.ConfigurationDescription != "baseline" ||
		*p.Access != armnetwork.SecurityConfigurationRuleAccessAlwaysAllow || *p.Priority != 102 ||
		*p.Direction != armnetwork.SecurityConfigurationRuleDirectionInbound || *p.Protocol != armnetwork.SecurityConfigurationRuleProtocolTCP ||
		*p.Sources[0].AddressPrefix != "10.0.0.0/8" || *p.Sources[0].AddressPrefixType != armnetwork.AddressPrefixTypeIPPrefix ||
		len(p.DestinationPortRanges) != 2 || *p.DestinationPortRanges[1] != "3389-3390" || *p.ProvisioningState != armnetwork.ProvisioningStateSucceeded {
		b, _ := json.Marshal(r)
		t.Errorf("rule 2 = %s", b)
	}
	if *got[4].Properties.Sources[0].AddressPrefixType != armnetwork.AddressPrefixTypeServiceTag {
		t.Errorf("rule 4 source type %s", *got[4].Properties.Sources[0].AddressPrefixType)
	}

	// One page without $top; none for a network without rules; 404 for a
	// network that does not exist; 400 for a skipToken it never gave.
	if resp, err := mc.ListNetworkManagerEffectiveSecurityAdminRules(ctx, testRG, "vnet-app", armnetwork.QueryRequestOptions{}, nil); err != nil || len(resp.Value) != 5 || resp.SkipToken != nil {
		t.Errorf("without $top: %d rules, token %v, %v", len(resp.Value), resp.SkipToken, err)
	}
	if _, err := n.createVNet(ctx, "vnet-bare", "10.20.0.0/16"); err != nil {
		t.Fatal(err)
	}
	if resp, err := mc.ListNetworkManagerEffectiveSecurityAdminRules(ctx, testRG, "vnet-bare", armnetwork.QueryRequestOptions{}, nil); err != nil || len(resp.Value) != 0 {
		t.Errorf("network without rules: %v %v", resp.Value, err)
	}
	if _, err := mc.ListNetworkManagerEffectiveSecurityAdminRules(ctx, testRG, "vnet-none", armnetwork.QueryRequestOptions{}, nil); err == nil {
		t.Error("missing network: no error")
	} else if status, code := errorCode(err); status != http.StatusNotFound || code != "ResourceNotFound" {
		t.Errorf("missing network: %d %s", status, code)
	}
	if _, err := mc.ListNetworkManagerEffectiveSecurityAdminRules(ctx, testRG, "vnet-app", armnetwork.QueryRequestOptions{SkipToken: to.Ptr("bogus")}, nil); err == nil {
		t.Error("bogus skipToken: no error")
	} else if status, code := errorCode(err); status != http.StatusBadRequest || code != "InvalidSkipToken" {
		t.Errorf("bogus skipToken: %d %s", status, code)
	}
}

// SetAdminRules refuses what Azure would not accept.
func TestSetAdminRulesRefusesInvalid(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	n := newVMNetwork(t, srv)
	vnet := n.appVNetID()
	good := adminRule("ok", 100, "Deny", nil, "22")
	for _, tc := range []struct {
		name  string
		vnet  string
		rules []azuresim.AdminRule
	}{
		{"not a virtual network id", strings.Replace(vnet, "virtualNetworks", "networkSecurityGroups", 1), []azuresim.AdminRule{good}},
		{"other subscription", strings.Replace(vnet, srv.SubscriptionID(), "00000000-0000-0000-0000-000000000000", 1), []azuresim.AdminRule{good}},
		{"no name", vnet, []azuresim.AdminRule{adminRule("", 100, "Deny", nil, "22")}},
		{"priority 0", vnet, []azuresim.AdminRule{adminRule("p", 0, "Deny", nil, "22")}},
		{"access Block", vnet, []azuresim.AdminRule{adminRule("b", 100, "Block", nil, "22")}},
		{"bad port", vnet, []azuresim.AdminRule{adminRule("b", 100, "Deny", nil, "70000")}},
		{"bad prefix", vnet, []azuresim.AdminRule{adminRule("b", 100, "Deny", []string{"Internet"}, "22")}},
		{"twice", vnet, []azuresim.AdminRule{good, good}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := srv.SetAdminRules(tc.vnet, tc.rules); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// IP flow verify, through armnetwork, judges every flow of a grid as
// VerifyFlow does, through admin rules, the subnet NSG and the NIC NSG,
// and names the deciding rule as Azure does.
func TestIPFlowVerifyMatchesVerifyFlow(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	a := newAdminFixture(t, srv)
	ruleSets := map[string][]azuresim.AdminRule{
		"none":   nil,
		"always": {adminRule("always-bastion", 100, "AlwaysAllow", []string{"10.99.0.0/24"}, "22")},
		"deny":   {adminRule("deny-ssh", 100, "Deny", []string{"*"}, "22")},
		"allow":  {adminRule("allow-ssh", 100, "Allow", []string{"203.0.113.0/24"}, "22")},
		"mixed": {adminRule("deny-office", 300, "Deny", []string{"203.0.113.0/24"}, "22", "443"),
			adminRule("always-grantee", 200, "AlwaysAllow", []string{"203.0.113.7"}, "22"),
			adminRule("allow-https", 100, "Allow", nil, "443")},
	}
	sources := []string{"203.0.113.7", "203.0.113.8", "198.51.100.1", "10.99.0.5"}
	ports := []int{22, 443, 3389}
	for name, rules := range ruleSets {
		if err := srv.SetAdminRules(a.vnet, rules); err != nil {
			t.Fatal(err)
		}
		for _, src := range sources {
			for _, port := range ports {
				v := a.verify(t, src, port)
				r := a.ipFlowVerify(t, src, port)
				wantAccess := armnetwork.AccessDeny
				if v.Allowed {
					wantAccess = armnetwork.AccessAllow
				}
				var wantRule string
				switch {
				case v.DecidedBy == azuresim.DecidedByAdminRule:
					wantRule = "securityAdminRules/" + v.AdminRule.Name
				case v.Priority >= 65000:
					wantRule = "defaultSecurityRules/" + v.RuleName
				default:
					wantRule = "securityRules/" + v.RuleName
				}
				if *r.Access != wantAccess || r.RuleName == nil || *r.RuleName != wantRule {
					got := "(none)"
					if r.RuleName != nil {
						got = *r.RuleName
					}
					t.Errorf("%s: %s -> %d: ipFlowVerify %s by %s, want %s by %s (VerifyFlow %+v)", name, src, port, *r.Access, got, wantAccess, wantRule, v)
				}
			}
		}
	}
}

// IP flow verify refuses what Azure refuses.
func TestIPFlowVerifyRefusesBadRequests(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	a := newAdminFixture(t, srv)
	raw := newRawClient(t, srv)
	path := "/subscriptions/" + srv.SubscriptionID() + "/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/ipFlowVerify?api-version=2025-05-01"
	body := func(edit func(map[string]any)) map[string]any {
		b := map[string]any{"targetResourceId": a.vm, "direction": "Inbound", "protocol": "TCP",
			"localIPAddress": a.ip, "localPort": "22", "remoteIPAddress": "198.51.100.1", "remotePort": "*"}
		edit(b)
		return b
	}
	otherNIC, err := a.createNIC(t.Context(), "nic-other", nicSpec{subnetID: a.appSubnetID("web")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		edit   func(map[string]any)
		status int
		code   string
	}{
		{"no target", func(b map[string]any) { delete(b, "targetResourceId") }, 400, "InvalidRequestFormat"},
		{"no local IP", func(b map[string]any) { delete(b, "localIPAddress") }, 400, "InvalidRequestFormat"},
		{"no remote port", func(b map[string]any) { delete(b, "remotePort") }, 400, "InvalidRequestFormat"},
		{"protocol ICMP", func(b map[string]any) { b["protocol"] = "ICMP" }, 400, "InvalidRequestFormat"},
		{"direction Both", func(b map[string]any) { b["direction"] = "Both" }, 400, "InvalidRequestFormat"},
		{"port 70000", func(b map[string]any) { b["localPort"] = "70000" }, 400, "InvalidRequestFormat"},
		{"remote IP not an address", func(b map[string]any) { b["remoteIPAddress"] = "example.com" }, 400, "InvalidRequestFormat"},
		{"target an NSG", func(b map[string]any) { b["targetResourceId"] = a.subnetNSG }, 400, "InvalidTargetResource"},
		{"NIC not on the VM", func(b map[string]any) { b["targetNicResourceId"] = *otherNIC.ID }, 400, "InvalidTargetResource"},
		{"missing VM", func(b map[string]any) { b["targetResourceId"] = vmID(srv, "vm-none") }, 404, "NotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := raw.must(http.MethodPost, path, body(tc.edit))
			if resp.StatusCode != tc.status || !strings.Contains(string(b), `"`+tc.code+`"`) {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}
	if resp, b := raw.must(http.MethodPost, path, body(func(b map[string]any) { b["targetNicResourceId"] = a.nic })); resp.StatusCode != http.StatusAccepted {
		t.Errorf("the VM's own NIC named: %d %s", resp.StatusCode, b)
	}
}

// A connection takes its virtual network's admin rules along: a Deny admin
// rule set later leaves it alive (no re-evaluation by itself), and the next
// flushing NSG write cuts it, naming the admin rule.
func TestAdminDenyCutsConnectionsOnlyAtAFlush(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	a := newAdminFixture(t, srv)
	id := establish(t, srv, azuresim.Flow{NetworkInterfaceID: a.nic, Protocol: "Tcp", Source: "203.0.113.7", DestinationPort: 22})
	if err := srv.SetAdminRules(a.vnet, []azuresim.AdminRule{adminRule("deny-ssh", 100, "Deny", nil, "22")}); err != nil {
		t.Fatal(err)
	}
	wantAlive(t, srv, id, "after the Deny admin rule")
	putNSG(t, a.networkClients, "nsg-nic", true,
		tcpRule("allow-ssh", 200, armnetwork.SecurityRuleAccessAllow, "*", "22"))
	if st := connState(t, srv, id); st.Alive || st.RuleName != "admin:deny-ssh" || st.NSGID != "" || st.Priority != 100 {
		t.Errorf("after a flushing NSG write: %+v, want cut by admin:deny-ssh", st)
	}
}

// The seed file brings up a whole VM network with admin rules.
func TestSeedFileNetworkAndAdminRules(t *testing.T) {
	sub := azuresim.DefaultSubscriptionID
	rg := "/subscriptions/" + sub + "/resourceGroups/rg-seed/providers/"
	nsg := rg + "Microsoft.Network/networkSecurityGroups/nsg-web"
	vnet := rg + "Microsoft.Network/virtualNetworks/vnet-seed"
	nic := rg + "Microsoft.Network/networkInterfaces/nic-web"
	vm := rg + "Microsoft.Compute/virtualMachines/vm-web"
	seed := fmt.Sprintf(`{
	  "networkSecurityGroups": [{"id": %[1]q, "location": "westeurope", "properties": {"securityRules": []}}],
	  "virtualNetworks": [{"id": %[2]q, "location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.30.0.0/16"]},
	    "subnets": [{"name": "web", "properties": {"addressPrefix": "10.30.1.0/24", "networkSecurityGroup": {"id": %[1]q}}}]}}],
	  "networkInterfaces": [{"id": %[3]q, "location": "westeurope", "properties": {"ipConfigurations": [{"name": "ipconfig1",
	    "properties": {"subnet": {"id": "%[2]s/subnets/web"}, "privateIPAllocationMethod": "Static", "privateIPAddress": "10.30.1.10"}}]}}],
	  "virtualMachines": [{"id": %[4]q, "location": "westeurope", "properties": {"networkProfile": {"networkInterfaces": [{"id": %[3]q}]}}}],
	  "virtualNetworkAdminRules": [{"virtualNetworkId": %[2]q, "rules": [
	    {"id": "%[5]sMicrosoft.Network/networkManagers/nm/securityAdminConfigurations/c/ruleCollections/rc/rules/always-ssh", "kind": "Custom",
	     "properties": {"access": "AlwaysAllow", "priority": 10, "direction": "Inbound", "protocol": "Tcp",
	       "sources": [{"addressPrefix": "*", "addressPrefixType": "IPPrefix"}], "destinations": [], "sourcePortRanges": [], "destinationPortRanges": ["22"]}}]}]
	}`, nsg, vnet, nic, vm, rg)
	path := t.TempDir() + "/seed.json"
	if err := writeFile(path, seed); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: path})
	v, err := srv.VerifyFlow(azuresim.Flow{NetworkInterfaceID: nic, Protocol: "Tcp", Source: "198.51.100.1", DestinationPort: 22})
	if err != nil || !v.Allowed || v.RuleName != "admin:always-ssh" {
		t.Errorf("seeded AlwaysAllow: %+v %v", v, err)
	}
	resp, b := newRawClient(t, srv).must(http.MethodGet, vm+"?api-version=2024-07-01", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), nic) {
		t.Errorf("seeded VM: %d %s", resp.StatusCode, b)
	}

	bad := strings.Replace(seed, `"priority": 10`, `"priority": 0`, 1)
	if err := writeFile(path, bad); err != nil {
		t.Fatal(err)
	}
	if s, err := azuresim.Start(azuresim.Options{SeedFile: path}); err == nil {
		_ = s.Close()
		t.Error("seed with an admin rule at priority 0 accepted")
	}
}

// PUT and GET /_sim/admin-rules set and show a network's admin rules.
func TestAdminRulesControlEndpoint(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	n := newVMNetwork(t, srv)
	raw := &rawClient{t: t, srv: srv}
	vnet := n.appVNetID()
	resp, b := raw.must(http.MethodPut, "/_sim/admin-rules", map[string]any{"virtualNetworkId": vnet,
		"rules": []any{adminRule("deny-rdp", 100, "Deny", nil, "3389")}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"access":"Deny"`) || !strings.Contains(string(b), `/rules/deny-rdp"`) {
		t.Errorf("PUT: %d %s", resp.StatusCode, b)
	}
	resp, b = raw.must(http.MethodGet, "/_sim/admin-rules?virtualNetworkId="+vnet, nil)
	var got struct {
		Rules []azuresim.AdminRule `json:"rules"`
	}
	if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != http.StatusOK || len(got.Rules) != 1 || got.Rules[0].Name != "deny-rdp" {
		t.Errorf("GET: %d %s", resp.StatusCode, b)
	}
	if resp, b := raw.must(http.MethodPut, "/_sim/admin-rules", map[string]any{"virtualNetworkId": vnet,
		"rules": []any{adminRule("bad", 5000, "Deny", nil, "3389")}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("PUT priority 5000: %d %s", resp.StatusCode, b)
	}
	v, err := srv.VerifyFlow(azuresim.Flow{VirtualNetworkID: vnet, Protocol: "Tcp", Source: "198.51.100.1", Destination: "10.0.0.4", DestinationPort: 3389})
	if err != nil || v.Allowed || v.RuleName != "admin:deny-rdp" {
		t.Errorf("flow after PUT: %+v %v", v, err)
	}
}
