package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/daemon"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

func TestParseVerifyFlags(t *testing.T) {
	o, err := parseVerifyFlags([]string{"--resource-group", "rg", "--json", "--concurrency", "3"})
	if err != nil || o.output != "json" || o.concurrency != 3 || len(o.resourceGroups) != 1 {
		t.Fatalf("parsed %+v, %v", o, err)
	}
	for _, args := range [][]string{{"--output", "yaml"}, {"--concurrency", "0"}, {"stray"}, {"--bogus"}} {
		if _, err := parseVerifyFlags(args); err == nil {
			t.Errorf("parseVerifyFlags(%q) succeeded", args)
		}
	}
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"verify", "--help"}, func(string) string { return "" }, &stdout, &bytes.Buffer{}); err != nil ||
		!strings.Contains(stdout.String(), "ipFlowVerify/action") || !strings.Contains(stdout.String(), "some answer of IP flow verify differs") {
		t.Errorf("--help: %v\n%s", err, stdout.String())
	}
	err = run(t.Context(), []string{"verify", "--output", "yaml"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if _, code := exitStatus(err); code != ExitUsage {
		t.Errorf("usage error: %v, want exit code %d", err, ExitUsage)
	}
}

// verifyWorld is a VM (vm-web, NIC at 10.0.1.4) in a subnet of its own
// virtual network, in its own resource group.
type verifyWorld struct {
	rg, vnet, subnet, nic, vm string
}

// armCredential is a client secret credential for the local Azure, as
// another tool would use.
func (la *localAzure) armCredential(t *testing.T) (*azidentity.ClientSecretCredential, policy.ClientOptions) {
	t.Helper()
	opts := policy.ClientOptions{Cloud: cloudConfiguration(la.client.Cloud())}
	cred, err := azidentity.NewClientSecretCredential(la.env["ARM_TENANT_ID"], la.env["ARM_CLIENT_ID"], la.env["ARM_CLIENT_SECRET"],
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	return cred, opts
}

// createVerifyWorld creates the virtual network (subnet 10.0.1.0/24 with
// subnetNSG), the NIC (10.0.1.4, with nicNSG unless "") and the VM.
func (la *localAzure) createVerifyWorld(t *testing.T, rg, subnetNSG, nicNSG string) verifyWorld {
	t.Helper()
	ctx := t.Context()
	w := verifyWorld{rg: rg, vnet: la.createVNet(t, rg, "vnet-web", subnetNSG)}
	w.subnet = w.vnet + "/subnets/vms"
	cred, opts := la.armCredential(t)
	nics, err := armnetwork.NewInterfacesClient(la.subscription(), cred, &arm.ClientOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	props := &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{
		Name: testproc.To("ipconfig1"), Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
			PrivateIPAddress: testproc.To("10.0.1.4"), PrivateIPAllocationMethod: testproc.To(armnetwork.IPAllocationMethodStatic),
			Subnet: &armnetwork.Subnet{ID: testproc.To(w.subnet)},
		}}}}
	if nicNSG != "" {
		props.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: testproc.To(nicNSG)}
	}
	poller, err := nics.BeginCreateOrUpdate(ctx, rg, "nic-web", armnetwork.Interface{Location: testproc.To("westeurope"), Properties: props}, nil)
	if err == nil {
		var resp armnetwork.InterfacesClientCreateOrUpdateResponse
		resp, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
		if err == nil {
			w.nic = *resp.ID
		}
	}
	if err != nil {
		t.Fatalf("create NIC: %v", err)
	}
	// The VM, through a plain ARM request (no compute SDK here).
	w.vm = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/vm-web", la.subscription(), rg)
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{la.client.Cloud().ResourceManagerAudience + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"location": "westeurope", "properties": map[string]any{
		"networkProfile": map[string]any{"networkInterfaces": []any{map[string]any{"id": w.nic}}}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, strings.TrimRight(la.client.Cloud().ResourceManagerEndpoint, "/")+w.vm+"?api-version=2024-07-01", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := la.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("create VM: %s %s", resp.Status, b)
	}
	return w
}

// jitdRun runs the jitd binary with the local Azure's environment and
// returns its combined output and exit code.
func (la *localAzure) jitdRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(la.jitd, args...)
	cmd.Env = la.environ()
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		return string(out), exitErr.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return string(out), 0
}

// jsonPart is the JSON object at the start of jitd's output (a failing
// exit adds a line on stderr after it).
func jsonPart(out string) string {
	if i := strings.LastIndex(out, "\n}\n"); i >= 0 {
		return out[:i+3]
	}
	return out
}

// TestVerifyAgainstLocalAzure runs jitd verify and jitd --verify against
// the local Azure process, whose IP flow verify judges flows through
// every layer: an open grant passes; a foreign rule letting an outside
// address in, and a grant rule removed out of band from the NIC's NSG,
// are mismatches naming Azure's rule.
func TestVerifyAgainstLocalAzure(t *testing.T) {
	la := startLocalAzure(t)
	exp := time.Now().Add(30 * time.Minute).Truncate(time.Second)

	t.Run("open grant", func(t *testing.T) {
		p := webPolicy(t, 100)
		nsg := la.createNSG(t, "verify-ok", "nsg-web", append(p.Rules(), grantOf(t, p, "s1", "203.0.113.7", "alice@example.com", exp, 1))...)
		la.createVerifyWorld(t, "verify-ok", nsg, "")
		out, code := la.jitdRun(t, "verify", "--resource-group", "verify-ok")
		t.Logf("jitd verify --resource-group verify-ok:\n%s", out)
		if code != 0 || !strings.Contains(out, "1 NSG(s) read, 1 with a policy: 3 probe(s) asked, 0 mismatch(es)") ||
			!strings.Contains(out, "grant s1") || strings.Contains(out, "MISMATCH") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		out, code = la.jitdRun(t, "verify", "--resource-group", "verify-ok", "--json")
		var rep verifyReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.Complete || rep.Probes != 3 || len(rep.Mismatches) != 0 {
			t.Fatalf("exit %d, %v:\n%s", code, err, out)
		}
		got := map[string]string{}
		for _, pr := range rep.NSGs[0].Probes {
			got[pr.Kind] = pr.Source + " " + pr.Access + " " + pr.RuleName
		}
		want := map[string]string{
			"grant":            "203.0.113.7 Allow securityRules/jit-web-g-s1",
			"outside":          "192.0.2.1 Deny securityRules/jit-web-guard-tcp",
			"allowed_no_grant": "203.0.113.1 Deny securityRules/jit-web-deny-tcp",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s probe: %q, want %q", k, got[k], v)
			}
		}
	})

	t.Run("foreign rule", func(t *testing.T) {
		bypass := sshFromInternet()
		bypass.Priority = 100 // ahead of the policy's band
		p := webPolicy(t, 200)
		nsg := la.createNSG(t, "verify-foreign", "nsg-web", append(p.Rules(), bypass, grantOf(t, p, "s2", "203.0.113.7", "bob@example.com", exp, 1))...)
		la.createVerifyWorld(t, "verify-foreign", nsg, "")
		out, code := la.jitdRun(t, "verify", "--resource-group", "verify-foreign")
		t.Logf("jitd verify --resource-group verify-foreign:\n%s", out)
		if code != ExitMismatch || !strings.Contains(out, "192.0.2.1, outside policy web's allowed sources, reaches 10.0.1.4 22/Tcp (Allow, must be Deny; decided by securityRules/AllowSSHFromInternet)") {
			t.Errorf("exit %d, want %d:\n%s", code, ExitMismatch, out)
		}
		out, _ = la.jitdRun(t, "verify", "--resource-group", "verify-foreign", "--output", "json")
		var rep verifyReport
		if err := json.Unmarshal([]byte(jsonPart(out)), &rep); err != nil || len(rep.Mismatches) != 2 {
			t.Fatalf("%v:\n%s", err, out)
		}
		for _, m := range rep.Mismatches {
			if m.RuleName != "securityRules/AllowSSHFromInternet" || m.Access != "Allow" || m.Expect != "Deny" {
				t.Errorf("mismatch %+v", m)
			}
		}

		// The daemon with --verify reports it: a finding, audited.
		auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
		out, code = la.jitdRun(t, "--once", "--verify", "--resource-group", "verify-foreign", "--audit-log", auditLog)
		if code != 0 {
			t.Fatalf("jitd --once --verify: exit %d\n%s", code, out)
		}
		events, err := audit.ReadFile(auditLog)
		if err != nil {
			t.Fatal(err)
		}
		var found []string
		for _, e := range events {
			if e.Kind == string(daemon.FindingVerifyMismatch) && e.Action == audit.ActionFind {
				found = append(found, e.RuleName)
			}
		}
		slices.Sort(found)
		want := []string{"securityRules/AllowSSHFromInternet allowed_no_grant 22/Tcp", "securityRules/AllowSSHFromInternet outside 22/Tcp"}
		if !slices.Equal(found, want) {
			t.Errorf("verify_mismatch findings %q, want %q; logs:\n%s", found, want, out)
		}
	})

	t.Run("grant rule removed out of band", func(t *testing.T) {
		// The policy covers the subnet's NSG and the NIC's: the grant's
		// rule is on both, and someone deletes it from the NIC's.
		p := webPolicy(t, 100)
		g := grantOf(t, p, "s3", "203.0.113.7", "carol@example.com", exp, 1)
		subnetNSG := la.createNSG(t, "verify-revoked", "nsg-subnet", append(p.Rules(), g)...)
		nicNSG := la.createNSG(t, "verify-revoked", "nsg-nic", append(p.Rules(), g)...)
		la.createVerifyWorld(t, "verify-revoked", subnetNSG, nicNSG)
		if out, code := la.jitdRun(t, "verify", "--resource-group", "verify-revoked"); code != 0 {
			t.Fatalf("before the deletion: exit %d\n%s", code, out)
		}
		poller, err := la.rules.BeginDelete(t.Context(), "verify-revoked", "nsg-nic", g.Name, nil)
		if err == nil {
			_, err = poller.PollUntilDone(t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
		}
		if err != nil {
			t.Fatal(err)
		}
		out, code := la.jitdRun(t, "verify", "--resource-group", "verify-revoked")
		t.Logf("jitd verify --resource-group verify-revoked:\n%s", out)
		if code != ExitMismatch || !strings.Contains(out, "grant s3's source 203.0.113.7 cannot reach 10.0.1.4 22/Tcp (Deny, must be Allow; decided by securityRules/jit-web-deny-tcp)") {
			t.Errorf("exit %d, want %d:\n%s", code, ExitMismatch, out)
		}
	})

	t.Run("security admin rule", func(t *testing.T) {
		// Virtual Network Manager's AlwaysAllow is evaluated before any
		// NSG: Azure names it as the deciding rule.
		p := webPolicy(t, 100)
		nsg := la.createNSG(t, "verify-admin", "nsg-web", p.Rules()...)
		w := la.createVerifyWorld(t, "verify-admin", nsg, "")
		la.setAdminRules(t, w.vnet, map[string]any{"name": "always-ssh", "properties": map[string]any{
			"access": "AlwaysAllow", "priority": 10, "direction": "Inbound", "protocol": "Tcp",
			"sources":               []map[string]string{{"addressPrefix": "*", "addressPrefixType": "IPPrefix"}},
			"destinations":          []map[string]string{{"addressPrefix": "*", "addressPrefixType": "IPPrefix"}},
			"destinationPortRanges": []string{"22"},
		}})
		out, code := la.jitdRun(t, "verify", "--resource-group", "verify-admin")
		t.Logf("jitd verify --resource-group verify-admin:\n%s", out)
		if code != ExitMismatch || !strings.Contains(out, "192.0.2.1, outside policy web's allowed sources, reaches 10.0.1.4 22/Tcp (Allow, must be Deny; decided by securityAdminRules/always-ssh)") {
			t.Errorf("exit %d, want %d:\n%s", code, ExitMismatch, out)
		}
	})

	t.Run("incomplete", func(t *testing.T) {
		out, code := la.jitdRun(t, "verify", "--nsg", fmt.Sprintf("/subscriptions/%s/resourceGroups/verify-ok/providers/Microsoft.Network/networkSecurityGroups/none", la.subscription()))
		if code != 1 || !strings.Contains(out, "INCOMPLETE") {
			t.Errorf("exit %d, want 1:\n%s", code, out)
		}
	})
}

// TestDaemonVerifiesEachChangeItSees: a running jitd --verify asks IP flow
// verify about an NSG after each change it sees there: a grant opened by
// another writer passes; a foreign rule letting the Internet in is
// reported as a verify_mismatch finding naming the rule.
func TestDaemonVerifiesEachChangeItSees(t *testing.T) {
	la := startLocalAzure(t)
	const rg = "verify-watch"
	p := webPolicy(t, 200)
	nsg := la.createNSG(t, rg, "nsg-web", p.Rules()...)
	la.createVerifyWorld(t, rg, nsg, "")
	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	j := la.startJitd(t, auditLog, "--verify", "--watch-interval", "1s", "--resource-group", rg)
	defer j.stop(t)
	verified := func(probes int) func() bool {
		return func() bool {
			return strings.Contains(j.Logs(), `"msg":"verified with Network Watcher"`) && strings.Contains(j.Logs(), fmt.Sprintf(`"probes":%d,"mismatches":0`, probes))
		}
	}
	if err := poll(30*time.Second, verified(2)); err != nil {
		t.Fatalf("the first pass was not verified (2 probes, no mismatch):\n%s", j.Logs())
	}

	// A grant opened by another writer: seen, verified, no mismatch.
	la.putRuleSDK(t, rg, "nsg-web", grantOf(t, p, "w1", "203.0.113.7", "alice@example.com", time.Now().Add(30*time.Minute).Truncate(time.Second), 1))
	if err := poll(30*time.Second, verified(3)); err != nil {
		t.Fatalf("the grant was not verified (3 probes, no mismatch):\n%s", j.Logs())
	}

	// A foreign rule: the next verification finds the Internet gets in.
	bypass := sshFromInternet()
	bypass.Priority = 100
	la.putRuleSDK(t, rg, "nsg-web", bypass)
	var found []string
	err := poll(30*time.Second, func() bool {
		events, err := audit.ReadFile(auditLog)
		if err != nil {
			return false
		}
		found = found[:0]
		for _, e := range events {
			if e.Kind == string(daemon.FindingVerifyMismatch) {
				found = append(found, e.RuleName)
			}
		}
		return len(found) == 2
	})
	slices.Sort(found)
	if want := []string{"securityRules/AllowSSHFromInternet allowed_no_grant 22/Tcp", "securityRules/AllowSSHFromInternet outside 22/Tcp"}; err != nil || !slices.Equal(found, want) {
		t.Errorf("verify_mismatch findings %q, want %q\n%s", found, want, j.Logs())
	}
	if v := j.metric(`jitd_verify_probes_total{result="mismatch"}`); v != 2 {
		t.Errorf(`jitd_verify_probes_total{result="mismatch"} = %v, want 2`, v)
	}
}
