package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const (
	fakeSubnetNSG = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-subnet"
	fakeNICNSG    = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-vm-a"
)

// fakeDefender is a migrationSource from fixed data.
type fakeDefender struct {
	policies []jit.DefenderPolicy
	rules    map[string][]jit.SecurityRule
	flows    int
}

func (f *fakeDefender) DefenderPolicies(context.Context, string, string) ([]jit.DefenderPolicy, error) {
	return f.policies, nil
}

func (f *fakeDefender) ListRules(_ context.Context, id string) ([]jit.SecurityRule, error) {
	rs, ok := f.rules[id]
	if !ok {
		return nil, errors.New("no such NSG")
	}
	return rs, nil
}

func (f *fakeDefender) VerifyMigrationFlow(_ context.Context, fl azure.MigrationFlow) (azure.MigrationFlowVerdict, error) {
	f.flows++
	return azure.MigrationFlowVerdict{Allowed: false, Rule: "securityRules/" + jit.DefenderRulePrefix + "_1_A"}, nil
}

func newFakeDefender(requestEnd time.Time) *fakeDefender {
	deny := func(name string) jit.SecurityRule {
		return jit.SecurityRule{Name: jit.DefenderRulePrefix + "_" + name, Priority: 1000, Direction: jit.Inbound, Access: jit.Deny, Protocol: jit.ProtocolTCP,
			SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"10.40.1.4"}, DestinationPorts: []string{"22"}}
	}
	return &fakeDefender{
		policies: []jit.DefenderPolicy{{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default", Name: "default",
			VMs: []jit.DefenderVM{{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-a",
				Ports: []jit.DefenderPort{{Number: 22, Protocol: "TCP", Sources: []string{"203.0.113.0/24"}, MaxDuration: "PT3H"}},
				NICs:  []jit.DefenderNIC{{ID: "nic-a", Addresses: []string{"10.40.1.4"}, NSGIDs: []string{fakeSubnetNSG, fakeNICNSG}}}}},
			Requests: []jit.DefenderRequest{{VMID: "/x/vm-a", Port: 22, Sources: []string{"203.0.113.50"}, End: requestEnd, Status: "Initiated", Requestor: "alice@example.com"}},
		}},
		rules: map[string][]jit.SecurityRule{fakeSubnetNSG: {deny("1_A")}, fakeNICNSG: {deny("1_B")}},
	}
}

func TestMigrateWritesPoliciesAndCutover(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	src := newFakeDefender(now.Add(-time.Minute))
	out := filepath.Join(t.TempDir(), "migration")
	var stdout, stderr bytes.Buffer
	if err := migrate(t.Context(), src, migrateOptions{subscription: "s", out: out}, now, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	tf, err := os.ReadFile(filepath.Join(out, "jit_policies.tf"))
	if err != nil {
		t.Fatal(err)
	}
	if _, diags := hclparse.NewParser().ParseHCL(tf, "jit_policies.tf"); diags.HasErrors() {
		t.Fatalf("jit_policies.tf does not parse: %v\n%s", diags, tf)
	}
	for _, want := range []string{`resource "jit_policy" "vm_a_default"`, `"203.0.113.0/24"`, `max_duration = "3h"`, `start = 100`, fakeSubnetNSG} {
		if !strings.Contains(string(tf), want) {
			t.Errorf("jit_policies.tf lacks %q:\n%s", want, tf)
		}
	}
	plan, err := os.ReadFile(filepath.Join(out, "CUTOVER.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--check", "az network nsg rule delete --resource-group rg --nsg-name nsg-subnet --name " + jit.DefenderRulePrefix + "_1_A", "vm-a"} {
		if !strings.Contains(string(plan), want) {
			t.Errorf("CUTOVER.md lacks %q", want)
		}
	}
	// --check verifies every probe with Network Watcher and writes nothing.
	stdout.Reset()
	if err := migrate(t.Context(), src, migrateOptions{subscription: "s", check: true}, now, &stdout, &stderr); err != nil {
		t.Fatalf("check: %v\n%s", err, stdout.String())
	}
	if src.flows == 0 || !strings.Contains(stdout.String(), "closed to the Internet now and at every step") {
		t.Errorf("check: %d flows\n%s", src.flows, stdout.String())
	}
	// A second run refuses to overwrite.
	err = migrate(t.Context(), src, migrateOptions{subscription: "s", out: out}, now, &stdout, &stderr)
	var exit *exitCodeError
	if !errors.As(err, &exit) || exit.code != ExitMigrationRefused {
		t.Errorf("second run into the same --out: %v", err)
	}
}

func TestMigrateRefusesAnActiveRequestAndWritesNothing(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	src := newFakeDefender(now.Add(20 * time.Minute))
	out := filepath.Join(t.TempDir(), "migration")
	var stdout, stderr bytes.Buffer
	err := migrate(t.Context(), src, migrateOptions{subscription: "s", out: out}, now, &stdout, &stderr)
	var exit *exitCodeError
	if !errors.As(err, &exit) || exit.code != ExitMigrationRefused {
		t.Fatalf("active request: %v", err)
	}
	if !strings.Contains(stderr.String(), "Defender request on vm-a port 22: from 203.0.113.50 by alice@example.com is active until 2026-11-30T09:20:00Z") {
		t.Errorf("stderr does not name the request:\n%s", stderr.String())
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--out was written: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 0 {
		t.Errorf("something was left beside --out: %v", entries)
	}
}

// A standing rule that lets the Internet in is found before anything is
// written.
func TestMigrateRefusesWhenAStepWouldBeOpen(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	src := newFakeDefender(now.Add(-time.Minute))
	open := jit.SecurityRule{Name: "legacy-ssh", Priority: 200, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
		SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
	src.rules[fakeSubnetNSG] = append(src.rules[fakeSubnetNSG], open)
	src.rules[fakeNICNSG] = append(src.rules[fakeNICNSG], open)
	out := filepath.Join(t.TempDir(), "migration")
	var stdout, stderr bytes.Buffer
	err := migrate(t.Context(), src, migrateOptions{subscription: "s", out: out}, now, &stdout, &stderr)
	var exit *exitCodeError
	if !errors.As(err, &exit) || exit.code != ExitMigrationRefused || !strings.Contains(stderr.String(), "legacy-ssh") {
		t.Fatalf("open step: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--out was written: %v", err)
	}
}
