package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const upgradeNSG = "/subscriptions/2c4a9e71-5b3f-4d8e-a6c2-7f1e0d9b3a52/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-web"

// A version 0 state, as the release before sets wrote it: lists in the
// order the configuration gave, and no fail_on_standing_access or
// standing_access.
const policyStateV0 = `{
  "id": "web@` + upgradeNSG + `",
  "name": "web",
  "network_security_group_ids": ["` + upgradeNSG + `"],
  "destination_address_prefixes": ["10.0.1.5", "10.0.1.4"],
  "allowed_source_address_prefixes": ["203.0.113.0/24", "198.51.100.0/24"],
  "ports": [
    {"port": 3389, "protocol": "Tcp", "max_duration": "1h"},
    {"port": 22, "protocol": "Tcp", "max_duration": "3h"}
  ],
  "priority_band": {"start": 100, "end": 199},
  "fail_on_bypass": true,
  "rule_names": ["jit-web-guard-tcp", "jit-web-deny-tcp"],
  "bypassing_rules": [
    {"network_security_group_id": "` + upgradeNSG + `", "name": "AllowSSHFromInternet", "priority": 90,
     "port": 22, "protocol": "Tcp", "reason": "r"}
  ],
  "timeouts": null
}`

// upgradePolicyState runs a raw state of the given version through the
// provider's UpgradeResourceState, as Terraform does before it plans, and
// returns the result in the current schema.
func upgradePolicyState(t *testing.T, version int64, raw string) policyModel {
	t.Helper()
	ctx := context.Background()
	server, err := providerFactories(noEnv)["jit"]()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := server.UpgradeResourceState(ctx, &tfprotov6.UpgradeResourceStateRequest{
		TypeName: "jit_policy", Version: version, RawState: &tfprotov6.RawState{JSON: []byte(raw)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.Diagnostics {
		t.Fatalf("upgrade: %s: %s", d.Summary, d.Detail)
	}
	var sr resource.SchemaResponse
	(&policyResource{}).Schema(ctx, resource.SchemaRequest{}, &sr)
	value, err := resp.UpgradedState.Unmarshal(sr.Schema.Type().TerraformType(ctx))
	if err != nil {
		t.Fatal(err)
	}
	var m policyModel
	state := tfsdk.State{Schema: sr.Schema, Raw: value}
	if diags := state.Get(ctx, &m); diags.HasError() {
		t.Fatalf("upgraded state: %v", diags)
	}
	return m
}

func TestPolicyStateUpgradeFromLists(t *testing.T) {
	m := upgradePolicyState(t, 0, policyStateV0)

	port := func(n int64, d string) attr.Value {
		return types.ObjectValueMust(portAttrTypes, map[string]attr.Value{
			"port": types.Int64Value(n), "protocol": types.StringValue("Tcp"), "max_duration": types.StringValue(d),
		})
	}
	// Sets compare by content: listed here in the other order on purpose.
	want := map[string][2]attr.Value{
		"destination_address_prefixes":    {m.DestinationPrefixes, stringSet([]string{"10.0.1.4", "10.0.1.5"})},
		"allowed_source_address_prefixes": {m.AllowedSources, stringSet([]string{"198.51.100.0/24", "203.0.113.0/24"})},
		"ports": {m.Ports, types.SetValueMust(types.ObjectType{AttrTypes: portAttrTypes},
			[]attr.Value{port(22, "3h"), port(3389, "1h")})},
		"id":                         {m.ID, types.StringValue("web@" + upgradeNSG)},
		"name":                       {m.Name, types.StringValue("web")},
		"network_security_group_ids": {m.NSGIDs, stringSet([]string{upgradeNSG})},
		"priority_band": {m.Band, types.ObjectValueMust(bandAttrTypes, map[string]attr.Value{
			"start": types.Int64Value(100), "end": types.Int64Value(199),
		})},
		"fail_on_bypass": {m.FailOnBypass, types.BoolValue(true)},
		// Not in the old state: the default, so the next plan shows no change.
		"fail_on_standing_access": {m.FailOnStanding, types.BoolValue(false)},
		"rule_names":              {m.RuleNames, stringList([]string{"jit-web-guard-tcp", "jit-web-deny-tcp"})},
		// Not known until the next refresh reads the NSGs.
		"standing_access": {m.StandingAccess, types.ListNull(types.ObjectType{AttrTypes: bypassAttrTypes})},
	}
	for name, v := range want {
		if !v[0].Equal(v[1]) {
			t.Errorf("%s = %s, want %s", name, v[0], v[1])
		}
	}
	if n := len(m.BypassingRules.Elements()); n != 1 {
		t.Errorf("bypassing_rules has %d entries, want the 1 of the old state", n)
	}
	if !m.Timeouts.IsNull() {
		t.Errorf("timeouts = %s, want null as before", m.Timeouts)
	}
}

// A version 0 state that already had fail_on_standing_access keeps it.
func TestPolicyStateUpgradeKeepsFailOnStandingAccess(t *testing.T) {
	raw := strings.Replace(policyStateV0, `"timeouts": null`,
		`"timeouts": {"create": "10m", "read": null, "update": null, "delete": null}, "fail_on_standing_access": true, "standing_access": []`, 1)
	m := upgradePolicyState(t, 0, raw)
	if !m.FailOnStanding.Equal(types.BoolValue(true)) {
		t.Errorf("fail_on_standing_access = %s, want true", m.FailOnStanding)
	}
	if m.StandingAccess.IsNull() || len(m.StandingAccess.Elements()) != 0 {
		t.Errorf("standing_access = %s, want the old state's empty list", m.StandingAccess)
	}
	if create, diags := m.Timeouts.Create(context.Background(), 0); diags.HasError() || create.String() != "10m0s" {
		t.Errorf("timeouts.create = %s, %v; want 10m as before", create, diags)
	}
}

// An error about one element of a set attribute points at the attribute:
// Terraform would otherwise underline the element at that index in the
// file, which for a set is not the one meant. The message keeps the index
// and names the value.
func TestAddPolicyErrorsPointsAtSetAttributes(t *testing.T) {
	_, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1"},
		AllowedSources: []string{"203.0.113.0/24", "203.0.113.128/25"}, BandStart: 100, BandEnd: 199,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "25h"}}})
	var diags diag.Diagnostics
	addPolicyErrors(&diags, err)
	want := map[string]string{
		"destination_address_prefixes":    `destination_address_prefixes[0]: destination "10.0.1"`,
		"allowed_source_address_prefixes": `allowed_source_address_prefixes[1]: allowed source "203.0.113.128/25" is inside "203.0.113.0/24"`,
		"ports":                           `ports[0].max_duration: max_duration "25h" exceeds`,
	}
	if len(diags) != len(want) {
		t.Fatalf("got %d diagnostics, want %d: %v", len(diags), len(want), diags)
	}
	for _, d := range diags {
		withPath, ok := d.(diag.DiagnosticWithPath)
		if !ok {
			t.Fatalf("diagnostic %q has no attribute path", d.Detail())
		}
		p := withPath.Path().String()
		if w, ok := want[p]; !ok || !strings.HasPrefix(d.Detail(), w) {
			t.Errorf("diagnostic at %s: %q; want one at a set attribute starting %q", p, d.Detail(), w)
		}
	}

	// Other attributes keep their full path.
	_, err = jit.NewPolicy(jit.PolicyInput{Name: "Web", DestinationPrefixes: []string{"*"}, AllowedSources: []string{"*"},
		BandStart: 100, BandEnd: 199, Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	diags = nil
	addPolicyErrors(&diags, err)
	if len(diags) != 1 {
		t.Fatalf("diagnostics = %v, want one at name", diags)
	}
	if d, ok := diags[0].(diag.DiagnosticWithPath); !ok || d.Path().String() != "name" {
		t.Fatalf("diagnostic %v, want one at name", diags[0])
	}
}
