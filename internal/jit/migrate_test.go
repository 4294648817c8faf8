package jit

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	migSubnetNSG = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-subnet"
	migNSGA      = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-vm-a"
	migNSGB      = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-vm-b"
)

func defenderDeny(name string, prio int32, dest string, port string) SecurityRule {
	return SecurityRule{Name: DefenderRulePrefix + "_" + name, Priority: prio, Direction: Inbound, Access: Deny, Protocol: ProtocolTCP,
		SourcePrefixes: []string{Any}, SourcePorts: []string{Any}, DestinationPrefixes: []string{dest}, DestinationPorts: []string{port}}
}

func migrationInput(now time.Time) MigrationInput {
	return MigrationInput{
		Now: now,
		Policies: []DefenderPolicy{{
			ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default", Name: "default",
			VMs: []DefenderVM{
				{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-a",
					Ports: []DefenderPort{{Number: 22, Protocol: "TCP", Sources: []string{"*"}, MaxDuration: "PT3H"}},
					NICs:  []DefenderNIC{{ID: "nic-a", Addresses: []string{"10.40.1.4"}, NSGIDs: []string{migSubnetNSG, migNSGA}}}},
				{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-b",
					Ports: []DefenderPort{
						{Number: 22, Protocol: "TCP", Sources: []string{"203.0.113.0/24"}, MaxDuration: "PT1H"},
						{Number: 3389, Protocol: "TCP", MaxDuration: "P1D"}},
					NICs: []DefenderNIC{{ID: "nic-b", Addresses: []string{"10.40.1.5"}, NSGIDs: []string{migSubnetNSG, migNSGB}}}},
			},
			Requests: []DefenderRequest{{VMID: "vm-a", Port: 22, Sources: []string{"203.0.113.50"}, End: now.Add(-time.Minute), Status: "Initiated"}},
		}},
		Rules: map[string][]SecurityRule{
			migSubnetNSG: {defenderDeny("1_A", 1000, "10.40.1.4", "22"), defenderDeny("1_B", 1001, "10.40.1.5", "22"), defenderDeny("1_C", 1002, "10.40.1.5", "3389")},
			migNSGA:      {defenderDeny("1_D", 1000, "10.40.1.4", "22")},
			migNSGB: {
				{Name: "ops-rdp", Priority: 300, Direction: Inbound, Access: Allow, Protocol: ProtocolTCP, SourcePrefixes: []string{"192.0.2.0/24"},
					SourcePorts: []string{Any}, DestinationPrefixes: []string{Any}, DestinationPorts: []string{"3389"}},
				defenderDeny("1_E", 1000, "10.40.1.5", "22"), defenderDeny("1_F", 301, "10.40.1.5", "3389")},
		},
	}
}

func TestPlanMigration(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	m, err := PlanMigration(migrationInput(now))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Policies) != 3 {
		t.Fatalf("want a policy for vm-a and two for vm-b (two source sets), got %d: %+v", len(m.Policies), m.Policies)
	}
	byName := map[string]MigratedPolicy{}
	for _, p := range m.Policies {
		byName[p.Resource] = p
	}
	a, b22, b3389 := byName["vm-a-default"], byName["vm-b-default"], byName["vm-b-default-2"]
	if a.Policy.Name == "" || b22.Policy.Name == "" || b3389.Policy.Name == "" {
		t.Fatalf("names: %v", byName)
	}
	if a.Policy.Ports[0] != (Port{Number: 22, Protocol: ProtocolTCP, MaxDuration: 3 * time.Hour}) || a.Policy.AllowedSources[0] != Any {
		t.Errorf("vm-a: %+v", a.Policy)
	}
	if b22.Policy.AllowedSources[0] != "203.0.113.0/24" || b22.Policy.Ports[0].MaxDuration != time.Hour {
		t.Errorf("vm-b 22: %+v", b22.Policy)
	}
	if b3389.Policy.Ports[0].MaxDuration != 24*time.Hour {
		t.Errorf("vm-b 3389: %+v", b3389.Policy)
	}
	// The subnet NSG is shared: no two bands overlap; vm-b's 3389 band
	// lies after the operator's rule for 3389 (priority 300).
	if a.Policy.Band.Overlaps(b22.Policy.Band) || a.Policy.Band.Overlaps(b3389.Policy.Band) || b22.Policy.Band.Overlaps(b3389.Policy.Band) {
		t.Errorf("bands overlap: %v %v %v", a.Policy.Band, b22.Policy.Band, b3389.Policy.Band)
	}
	if b3389.Policy.Band.Start <= 300 {
		t.Errorf("vm-b 3389 band %v is ahead of the operator's rule at 300", b3389.Policy.Band)
	}
	if len(m.DefenderRules[migSubnetNSG]) != 3 {
		t.Errorf("Defender rules to sweep: %v", m.DefenderRules)
	}
	for _, r := range m.CheckCutover(migrationInput(now).Rules) {
		if r.Allowed {
			t.Errorf("%s: %s is open (rule %s)", r.Step, r.CutoverProbe, r.Rule)
		}
	}

	// Once applied, the same policies are found and imported, with their
	// bands.
	in := migrationInput(now)
	for id, rs := range m.StepRules(in.Rules, StepJitApplied) {
		for k := range in.Rules {
			if strings.EqualFold(k, id) {
				in.Rules[k] = rs
			}
		}
	}
	again, err := PlanMigration(in)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range again.Policies {
		if !p.Import || p.Policy.Band != m.Policies[i].Policy.Band {
			t.Errorf("second run: %s import=%v band %v, first %v", p.Resource, p.Import, p.Policy.Band, m.Policies[i].Policy.Band)
		}
	}
}

// A port kept open by a foreign rule stays open after Defender leaves, and
// the check says so at every step.
func TestCheckCutoverFindsAnOpenPort(t *testing.T) {
	now := time.Now()
	in := migrationInput(now)
	in.Rules[migNSGA] = append(in.Rules[migNSGA], SecurityRule{Name: "legacy-ssh", Priority: 200, Direction: Inbound, Access: Allow,
		Protocol: ProtocolTCP, SourcePrefixes: []string{"Internet"}, SourcePorts: []string{Any}, DestinationPrefixes: []string{Any}, DestinationPorts: []string{"22"}})
	in.Rules[migSubnetNSG] = append(in.Rules[migSubnetNSG], SecurityRule{Name: "legacy-ssh", Priority: 200, Direction: Inbound, Access: Allow,
		Protocol: ProtocolTCP, SourcePrefixes: []string{"Internet"}, SourcePorts: []string{Any}, DestinationPrefixes: []string{Any}, DestinationPorts: []string{"22"}})
	m, err := PlanMigration(in)
	if err != nil {
		t.Fatal(err)
	}
	open := map[CutoverStep]bool{}
	for _, r := range m.CheckCutover(in.Rules) {
		if r.Allowed && r.CutoverProbe.Port.Number == 22 && strings.HasSuffix(r.CutoverProbe.VMID, "vm-a") {
			open[r.Step] = true
		}
	}
	if !open[StepNow] || !open[StepJitApplied] || !open[StepDefenderOff] {
		t.Errorf("legacy-ssh keeps vm-a:22 open at every step; found open at %v", open)
	}
}

func TestPlanMigrationRefusesBadInput(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	in := migrationInput(now)
	p := &in.Policies[0]
	p.Requests[0].End = now.Add(10 * time.Minute)
	p.Requests[0].Requestor = "alice@example.com"
	p.VMs = append(p.VMs,
		DefenderVM{ID: "/x/virtualMachines/vm-nonic", Ports: []DefenderPort{{Number: 22, Protocol: "TCP", MaxDuration: "PT1H"}}},
		DefenderVM{ID: "/x/virtualMachines/vm-nonsg", Ports: []DefenderPort{{Number: 22, Protocol: "TCP", MaxDuration: "PT1H"}},
			NICs: []DefenderNIC{{ID: "nic-c", Addresses: []string{"10.40.1.6"}}}},
		DefenderVM{ID: "/x/virtualMachines/vm-icmp", Ports: []DefenderPort{{Number: 22, Protocol: "ICMP", MaxDuration: "PT1H"}},
			NICs: []DefenderNIC{{ID: "nic-d", Addresses: []string{"10.40.1.7"}, NSGIDs: []string{migNSGA}}}},
		DefenderVM{ID: "/x/virtualMachines/vm-tag", Ports: []DefenderPort{{Number: 22, Protocol: "TCP", Sources: []string{"Internet"}, MaxDuration: "PT1H"}},
			NICs: []DefenderNIC{{ID: "nic-e", Addresses: []string{"10.40.1.8"}, NSGIDs: []string{migNSGA}}}},
	)
	// nsg-vm-b has no room for a band.
	var full []SecurityRule
	for prio := int32(100); prio <= MaxPriority; prio += 12 {
		full = append(full, SecurityRule{Name: fmt.Sprintf("udp-%d", prio), Priority: prio, Direction: Inbound, Access: Deny, Protocol: ProtocolUDP,
			SourcePrefixes: []string{Any}, SourcePorts: []string{Any}, DestinationPrefixes: []string{Any}, DestinationPorts: []string{"9"}})
	}
	in.Rules[migNSGB] = full
	_, err := PlanMigration(in)
	want := map[string]string{
		"Defender request on vm-a port 22": "alice@example.com is active until 2026-11-30T09:10:00Z",
		"VM vm-nonic":                      "no network interfaces",
		"VM vm-nonsg":                      "no network security group",
		"VM vm-icmp port 22":               `protocol "ICMP" cannot be expressed`,
		"VM vm-tag":                        "service tag",
		"VM vm-b":                          "no run of 13 free priorities",
	}
	got := MigrationErrors(err)
	for subject, text := range want {
		found := false
		for _, e := range got {
			if e.Subject == subject && strings.Contains(e.Message, text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem %q containing %q in:\n%v", subject, text, err)
		}
	}
}
