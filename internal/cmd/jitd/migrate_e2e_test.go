package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/security/armsecurity"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// defenderSetup is a Defender for Cloud JIT setup on the local Azure: two
// VMs in one subnet with an NSG, each NIC with its own NSG, one Defender
// policy over both.
type defenderSetup struct {
	rg                       string
	subnetNSG, nsgA, nsgB    string
	nicA, nicB, vmA, vmB     string
	policies                 *armsecurity.JitNetworkAccessPoliciesClient
	location, defenderPolicy string
}

// armPipeline is an authenticated pipeline to the local Azure, for the
// requests the test makes with no SDK client (VM PUTs).
func (la *localAzure) armPipeline(t *testing.T) (arm.ClientOptions, *azidentity.ClientSecretCredential) {
	t.Helper()
	cfg, err := azure.ConfigFromEnv(la.getenv)
	if err != nil {
		t.Fatal(err)
	}
	opts := policy.ClientOptions{Cloud: cloudConfiguration(la.client.Cloud())}
	cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	return arm.ClientOptions{ClientOptions: opts}, cred
}

func newDefenderSetup(t *testing.T, la *localAzure, rg string) *defenderSetup {
	t.Helper()
	ctx := t.Context()
	opts, cred := la.armPipeline(t)
	d := &defenderSetup{rg: rg, location: "westeurope", defenderPolicy: "default"}
	d.subnetNSG = la.createNSG(t, rg, "nsg-subnet")
	d.nsgA = la.createNSG(t, rg, "nsg-vm-a")
	d.nsgB = la.createNSG(t, rg, "nsg-vm-b")
	vnet := la.createVNet(t, rg, "vnet-app", d.subnetNSG)
	nics, err := armnetwork.NewInterfacesClient(la.subscription(), cred, &opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := arm.NewClient("migrate-e2e", "v1.0.0", cred, &opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, vm := range []struct {
		name, nsg, ip string
		nic, id       *string
	}{{"a", d.nsgA, "10.0.1.4", &d.nicA, &d.vmA}, {"b", d.nsgB, "10.0.1.5", &d.nicB, &d.vmB}} {
		poller, err := nics.BeginCreateOrUpdate(ctx, rg, "nic-"+vm.name, armnetwork.Interface{
			Location: testproc.To("westeurope"),
			Properties: &armnetwork.InterfacePropertiesFormat{
				NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: testproc.To(vm.nsg)},
				IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: testproc.To("ipconfig1"), Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
					Subnet:                    &armnetwork.Subnet{ID: testproc.To(vnet + "/subnets/vms")},
					PrivateIPAllocationMethod: testproc.To(armnetwork.IPAllocationMethodStatic), PrivateIPAddress: testproc.To(vm.ip),
				}}},
			},
		}, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
		}
		if err != nil {
			t.Fatalf("create nic-%s: %v", vm.name, err)
		}
		*vm.nic = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkInterfaces/nic-%s", la.subscription(), rg, vm.name)
		*vm.id = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/vm-%s", la.subscription(), rg, vm.name)
		body, _ := json.Marshal(map[string]any{"location": "westeurope", "properties": map[string]any{
			"networkProfile": map[string]any{"networkInterfaces": []any{map[string]any{"id": *vm.nic}}}}})
		req, err := runtime.NewRequest(ctx, http.MethodPut, runtime.JoinPaths(raw.Endpoint(), *vm.id)+"?api-version=2024-07-01")
		if err == nil {
			err = req.SetBody(streaming.NopCloser(bytes.NewReader(body)), "application/json")
		}
		var resp *http.Response
		if err == nil {
			resp, err = raw.Pipeline().Do(req)
		}
		if err != nil || !runtime.HasStatusCode(resp, http.StatusOK, http.StatusCreated) {
			t.Fatalf("create vm-%s: %v %v", vm.name, err, resp)
		}
	}
	if d.policies, err = armsecurity.NewJitNetworkAccessPoliciesClient(la.subscription(), cred, &opts); err != nil {
		t.Fatal(err)
	}
	_, err = d.policies.CreateOrUpdate(ctx, rg, d.location, d.defenderPolicy, armsecurity.JitNetworkAccessPolicy{
		Kind: testproc.To("Basic"),
		Properties: &armsecurity.JitNetworkAccessPolicyProperties{VirtualMachines: []*armsecurity.JitNetworkAccessPolicyVirtualMachine{
			{ID: testproc.To(d.vmA), Ports: []*armsecurity.JitNetworkAccessPortRule{
				{Number: testproc.To[int32](22), Protocol: testproc.To(armsecurity.ProtocolTCP), AllowedSourceAddressPrefix: testproc.To("*"), MaxRequestAccessDuration: testproc.To("PT3H")}}},
			{ID: testproc.To(d.vmB), Ports: []*armsecurity.JitNetworkAccessPortRule{
				{Number: testproc.To[int32](22), Protocol: testproc.To(armsecurity.ProtocolTCP), AllowedSourceAddressPrefixes: []*string{testproc.To("203.0.113.0/24")}, MaxRequestAccessDuration: testproc.To("PT1H")},
				{Number: testproc.To[int32](3389), Protocol: testproc.To(armsecurity.ProtocolTCP), AllowedSourceAddressPrefix: testproc.To("*"), MaxRequestAccessDuration: testproc.To("PT2H")}}},
		}},
	}, nil)
	if err != nil {
		t.Fatalf("put the Defender JIT policy: %v", err)
	}
	return d
}

// nicReachable asks the local Azure's flow verification whether src may
// reach port/TCP of the NIC's address, through its subnet's NSG and its own.
func (la *localAzure) nicReachable(t *testing.T, nicID, src string, port int) (bool, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"networkInterfaceId": nicID, "protocol": "Tcp", "source": src, "destinationPort": port})
	resp, err := la.http.Post(la.url+"/_sim/flow/verify", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("flow verify: %v", err)
	}
	defer resp.Body.Close()
	var v struct {
		Allowed  bool
		RuleName string
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("flow verify: %d %v", resp.StatusCode, err)
	}
	return v.Allowed, v.RuleName
}

// jitdMigrate runs jitd migrate defender and returns its output and exit
// code.
func (la *localAzure) jitdMigrate(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(la.jitd, append([]string{"migrate", "defender"}, args...)...)
	cmd.Env = la.environ()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("jitd migrate: %v", err)
	}
	return string(out), 0
}

const migrateProviderConfig = `
terraform {
  required_providers {
    jit = { source = "jitaccess/jit" }
  }
}

provider "jit" {}
`

// TestEndToEndMigrateFromDefender moves a Defender for Cloud JIT setup to
// jit policies with the real local Azure, jitd and terraform, as the guide
// says: while a Defender request is active jitd refuses and writes
// nothing (the request's source keeps its access until Defender's end and
// then loses it); then it writes the policies and the cutover; terraform
// applies them beside Defender's rules; the VMs leave Defender; jitd's
// --check (Network Watcher) and the local Azure's flow verification say
// the protected ports were closed to the Internet at every step.
func TestEndToEndMigrateFromDefender(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("set TF_ACC=1 to run the Defender migration end-to-end test (terraform, and a Defender request to wait out)")
	}
	started := time.Now()
	terraform, err := testproc.TerraformPath()
	if err != nil {
		t.Fatal(err)
	}
	la := startLocalAzure(t)
	pluginDir, err := buildProvider()
	if err != nil {
		t.Fatal(err)
	}
	const rg = "e2e-defender"
	d := newDefenderSetup(t, la, rg)
	ctx := t.Context()

	const requester, internet = "203.0.113.50", jit.InternetProbeSource
	end := time.Now().Add(40 * time.Second).UTC()
	if _, err := d.policies.Initiate(ctx, rg, d.location, d.defenderPolicy, armsecurity.JitNetworkAccessPolicyInitiateRequest{
		Justification: testproc.To("hotfix"),
		VirtualMachines: []*armsecurity.JitNetworkAccessPolicyInitiateVirtualMachine{{ID: testproc.To(d.vmA),
			Ports: []*armsecurity.JitNetworkAccessPolicyInitiatePort{{Number: testproc.To[int32](22), AllowedSourceAddressPrefix: testproc.To(requester), EndTimeUTC: &end}}}},
	}, nil); err != nil {
		t.Fatalf("initiate a Defender request: %v", err)
	}

	// closed asserts that the Internet reaches none of the protected ports
	// and reports whether the requester reaches vm-a:22.
	closed := func(step string) bool {
		t.Helper()
		for _, c := range []struct {
			nic  string
			port int
		}{{d.nicA, 22}, {d.nicB, 22}, {d.nicB, 3389}} {
			for _, src := range []string{internet, "203.0.113.9"} {
				if ok, rule := la.nicReachable(t, c.nic, src, c.port); ok {
					t.Errorf("%s: %s reaches %s:%d (rule %s)", step, src, lastIDSegment(c.nic), c.port, rule)
				}
			}
		}
		ok, _ := la.nicReachable(t, d.nicA, requester, 22)
		return ok
	}
	check := func(step string) {
		t.Helper()
		out, code := la.jitdMigrate(t, "--resource-group", rg, "--check")
		if code != 0 || !strings.Contains(out, "closed to the Internet now and at every step ahead") {
			t.Fatalf("%s: jitd migrate --check exit %d:\n%s", step, code, out)
		}
	}

	// Step 0: the request is active. Migrate refuses, names it, writes
	// nothing; the requester keeps Defender's access until its end.
	out := filepath.Join(t.TempDir(), "migration")
	msg, code := la.jitdMigrate(t, "--resource-group", rg, "--out", out)
	if code != ExitMigrationRefused || !strings.Contains(msg, "Defender request on vm-a port 22: from "+requester) || !strings.Contains(msg, "nothing written") {
		t.Fatalf("migrate with an active request: exit %d\n%s", code, msg)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("migrate wrote %s while refusing", out)
	}
	if !closed("while the Defender request is active") {
		t.Error("the requester lost Defender's access before its end")
	}
	if err := poll(time.Until(end)+time.Minute, func() bool { ok, _ := la.nicReachable(t, d.nicA, requester, 22); return !ok }); err != nil {
		t.Fatalf("the Defender request did not end: %v", err)
	}
	t.Logf("the Defender request ended %s after its endTimeUtc", time.Since(end).Round(time.Millisecond))

	// A Defender rule an older policy left behind, for the sweep.
	const orphan = jit.DefenderRulePrefix + "_-1_DEADBEEF"
	la.putRuleSDK(t, rg, "nsg-vm-b", jit.SecurityRule{Name: orphan, Priority: 4000, Direction: jit.Inbound, Access: jit.Deny,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"10.0.1.5"}, DestinationPorts: []string{"3389"}})

	// Step 0, after the request: check, then write.
	check("before the migration")
	migStart := time.Now()
	msg, code = la.jitdMigrate(t, "--resource-group", rg, "--out", out)
	migTook := time.Since(migStart)
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s", code, msg)
	}
	for _, f := range []string{"jit_policies.tf", "CUTOVER.md"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatalf("migrate did not write %s: %v", f, err)
		}
	}
	policies, _ := os.ReadFile(filepath.Join(out, "jit_policies.tf"))

	// Step 1: terraform applies the jit policies beside Defender's rules.
	tf := testproc.NewTerraform(t, terraform, out, testproc.DevOverrides(pluginDir), map[string]string{"providers.tf": migrateProviderConfig}, la.environ()...)
	if o, err := tf.Run("apply", "-auto-approve", "-input=false", "-no-color"); err != nil || !strings.Contains(o, "3 added") {
		t.Fatalf("terraform apply: %v\n%s\n%s", err, o, policies)
	}
	if closed("after terraform apply") {
		t.Error("the requester reaches vm-a:22 with no grant after apply")
	}
	check("after terraform apply")

	// A second migrate now finds the policies and imports them.
	again := filepath.Join(t.TempDir(), "again")
	if msg, code := la.jitdMigrate(t, "--resource-group", rg, "--out", again); code != 0 {
		t.Fatalf("second migrate: exit %d\n%s", code, msg)
	}
	if b, _ := os.ReadFile(filepath.Join(again, "jit_policies.tf")); strings.Count(string(b), "import {") != 3 {
		t.Errorf("second migrate does not import the three applied policies:\n%s", b)
	}

	// Steps 2 and 3: the VMs leave Defender (the policy goes), and no
	// Defender rule is left to sweep.
	if _, err := d.policies.Delete(ctx, rg, d.location, d.defenderPolicy, nil); err != nil {
		t.Fatalf("delete the Defender policy: %v", err)
	}
	// The sweep: CUTOVER.md names the rule left behind; delete it as it
	// says (here through the SDK).
	plan, _ := os.ReadFile(filepath.Join(out, "CUTOVER.md"))
	if !strings.Contains(string(plan), "az network nsg rule delete --resource-group "+rg+" --nsg-name nsg-vm-b --name "+orphan) {
		t.Errorf("CUTOVER.md does not sweep %s:\n%s", orphan, plan)
	}
	poller, err := la.rules.BeginDelete(ctx, rg, "nsg-vm-b", orphan, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("sweep %s: %v", orphan, err)
	}
	for _, nsg := range []string{d.subnetNSG, d.nsgA, d.nsgB} {
		for _, name := range la.ruleNames(t, nsg) {
			if strings.HasPrefix(name, jit.DefenderRulePrefix) {
				t.Errorf("%s: Defender rule %s left after the policy's deletion and the sweep", lastIDSegment(nsg), name)
			}
		}
	}
	if closed("after Defender is gone") {
		t.Error("the requester reaches vm-a:22 with no grant after Defender is gone")
	}
	// --check has no Defender policy left to read and says so; jitd scan
	// is the last check, as the cutover plan says.
	if msg, code := la.jitdMigrate(t, "--resource-group", rg, "--check"); code != ExitMigrationRefused || !strings.Contains(msg, "no Defender for Cloud JIT policy") {
		t.Errorf("check after Defender is gone: exit %d\n%s", code, msg)
	}
	scan := exec.Command(la.jitd, "scan", "--resource-group", rg, "--ports", "22,3389")
	scan.Env = la.environ()
	if o, err := scan.CombinedOutput(); err != nil {
		t.Errorf("jitd scan after the cutover: %v\n%s", err, o)
	}
	if o, err := tf.Run("plan", "-detailed-exitcode", "-input=false", "-no-color"); err != nil {
		t.Errorf("terraform plan after the cutover: %v (exit 2 means changes)\n%s", err, o)
	}

	// The requester gets in again only through a jit grant.
	testproc.WriteFile(t, filepath.Join(out, "grant.tf"), fmt.Sprintf(`
resource "jit_access_grant" "hotfix" {
  policy_id             = jit_policy.vm_a_default.id
  ports                 = [22]
  source_address_prefix = %q
  duration              = "5m"
  requester             = "alice@example.com"
  justification         = "the hotfix, through a pull request this time"
}
`, requester))
	if o, err := tf.Run("apply", "-auto-approve", "-input=false", "-no-color"); err != nil {
		t.Fatalf("terraform apply of the grant: %v\n%s", err, o)
	}
	if !closed("with a jit grant for the requester") {
		t.Error("the requester cannot reach vm-a:22 with a jit grant")
	}
	t.Logf("jitd migrate defender took %s; the whole test %s", migTook.Round(time.Millisecond), time.Since(started).Round(time.Second))
}
