package provider

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

func stringsExact(values ...string) knownvalue.Check {
	checks := make([]knownvalue.Check, len(values))
	for i, v := range values {
		checks[i] = knownvalue.StringExact(v)
	}
	return knownvalue.ListExact(checks)
}

// A VNet whose subnet has an NSG, and two VMs' NICs in it, one with an NSG
// of its own: the data source gives a policy both NSGs and both addresses.
func TestAccNetworkInterfaces_subnetAndNICLevel(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	subnetNSG := env.CreateNSG("nsg-subnet-web")
	nicNSG := env.CreateNSG("nsg-nic-web-2")
	env.CreateVNet("vnet-app", "10.30.0.0/16", acctest.Subnet{Name: "web", Prefix: "10.30.1.0/24", NSGID: subnetNSG})
	web := env.SubnetID("vnet-app", "web")
	nic1, ips1 := env.CreateNIC("nic-web-1", acctest.NIC{SubnetIDs: []string{web}})
	nic2, ips2 := env.CreateNIC("nic-web-2", acctest.NIC{NSGID: nicNSG, SubnetIDs: []string{web}})

	config := func(ids ...string) string {
		return env.ProviderBlock() + `
data "jit_network_interfaces" "web" {
  ids = ["` + strings.Join(ids, `", "`) + `"]
}
`
	}
	const ds = "data.jit_network_interfaces.web"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{
			{
				// A VM id where a NIC id belongs fails at plan time.
				Config:      config(strings.Replace(nic1, "Microsoft.Network/networkInterfaces", "Microsoft.Compute/virtualMachines", 1)),
				ExpectError: regexp.MustCompile(`Invalid Network Interface ID`),
			},
			{
				Config: config(nic1, nic2, strings.ToLower(nic1)),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(ds, tfjsonpath.New("network_security_group_ids"), stringsExact(subnetNSG, nicNSG)),
					statecheck.ExpectKnownValue(ds, tfjsonpath.New("private_ip_addresses"), stringsExact("10.30.1.4", "10.30.1.5")),
					statecheck.ExpectKnownValue(ds, tfjsonpath.New("interfaces"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectExact(map[string]knownvalue.Check{
							"id":                                knownvalue.StringExact(nic1),
							"name":                              knownvalue.StringExact("nic-web-1"),
							"network_security_group_id":         knownvalue.Null(),
							"subnet_ids":                        stringsExact(web),
							"subnet_network_security_group_ids": stringsExact(subnetNSG),
							"private_ip_addresses":              stringsExact(ips1...),
						}),
						knownvalue.ObjectExact(map[string]knownvalue.Check{
							"id":                                knownvalue.StringExact(nic2),
							"name":                              knownvalue.StringExact("nic-web-2"),
							"network_security_group_id":         knownvalue.StringExact(nicNSG),
							"subnet_ids":                        stringsExact(web),
							"subnet_network_security_group_ids": stringsExact(subnetNSG),
							"private_ip_addresses":              stringsExact(ips2...),
						}),
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"id": knownvalue.StringExact(nic1)}),
					})),
				},
			},
		},
	})
}

// A NIC with no NSG at either level still reads (with a warning: see
// TestNetworkInterfacesDataSource_warnsWithoutNSG), giving a policy nothing.
func TestAccNetworkInterfaces_withoutNSG(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	env.CreateVNet("vnet-open", "10.40.0.0/16", acctest.Subnet{Name: "open", Prefix: "10.40.0.0/24"})
	nic, _ := env.CreateNIC("nic-open", acctest.NIC{SubnetIDs: []string{env.SubnetID("vnet-open", "open")}})

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{{
			Config: env.ProviderBlock() + `
data "jit_network_interfaces" "open" {
  ids = ["` + nic + `"]
}
`,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("data.jit_network_interfaces.open", tfjsonpath.New("network_security_group_ids"), knownvalue.ListSizeExact(0)),
				statecheck.ExpectKnownValue("data.jit_network_interfaces.open", tfjsonpath.New("private_ip_addresses"), stringsExact("10.40.0.4")),
			},
		}},
	})
}

// terraform-plugin-testing does not expose warnings, so this reads the data
// source in-process against a local Azure and looks at the diagnostics.
func TestNetworkInterfacesDataSource_warnsWithoutNSG(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsg := env.CreateNSG("nsg-guarded")
	env.CreateVNet("vnet-app", "10.50.0.0/16",
		acctest.Subnet{Name: "guarded", Prefix: "10.50.1.0/24", NSGID: nsg},
		acctest.Subnet{Name: "open", Prefix: "10.50.2.0/24"})
	guarded, _ := env.CreateNIC("nic-guarded", acctest.NIC{SubnetIDs: []string{env.SubnetID("vnet-app", "guarded")}})
	open, _ := env.CreateNIC("nic-open", acctest.NIC{SubnetIDs: []string{env.SubnetID("vnet-app", "open")}})

	vars := env.Sim.Environ(simtest.CAFile())
	cfg, err := azure.ConfigFromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	client, err := azure.NewClient(context.Background(), cfg, azure.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}

	diags, state := readNetworkInterfaces(t, client, guarded, open)
	if diags.HasError() {
		t.Fatalf("read: %v", diags)
	}
	warnings := diags.Warnings()
	if len(warnings) != 1 {
		t.Fatalf("warnings = %v, want one for %s", warnings, open)
	}
	w, ok := warnings[0].(diag.DiagnosticWithPath)
	if !ok || !w.Path().Equal(path.Root("ids").AtListIndex(1)) || !strings.Contains(w.Detail(), open) ||
		!strings.Contains(w.Detail(), "Associate an NSG") {
		t.Errorf("warning %q: %q at %v; want it on ids[1], naming %s and saying what to do", w.Summary(), w.Detail(), w.Path(), open)
	}
	if len(state.NSGIDs.Elements()) != 1 || len(state.PrivateIPs.Elements()) != 2 {
		t.Errorf("state: NSGs %v, addresses %v", state.NSGIDs, state.PrivateIPs)
	}
}

// readNetworkInterfaces runs the data source's Read for ids.
func readNetworkInterfaces(t *testing.T, client *azure.Client, ids ...string) (diag.Diagnostics, networkInterfacesModel) {
	t.Helper()
	ctx := context.Background()
	ds := &networkInterfacesDataSource{data: &providerData{client: client}}
	var sresp datasource.SchemaResponse
	ds.Schema(ctx, datasource.SchemaRequest{}, &sresp)
	if diags := sresp.Schema.ValidateImplementation(ctx); diags.HasError() {
		t.Fatalf("schema: %v", diags)
	}
	typ, ok := sresp.Schema.Type().TerraformType(ctx).(tftypes.Object)
	if !ok {
		t.Fatalf("schema type is %T, want tftypes.Object", sresp.Schema.Type().TerraformType(ctx))
	}
	values := map[string]tftypes.Value{}
	for name, at := range typ.AttributeTypes {
		values[name] = tftypes.NewValue(at, nil)
	}
	idValues := make([]tftypes.Value, len(ids))
	for i, id := range ids {
		idValues[i] = tftypes.NewValue(tftypes.String, id)
	}
	values["ids"] = tftypes.NewValue(tftypes.List{ElementType: tftypes.String}, idValues)
	req := datasource.ReadRequest{Config: tfsdk.Config{Schema: sresp.Schema, Raw: tftypes.NewValue(typ, values)}}
	resp := &datasource.ReadResponse{State: tfsdk.State{Schema: sresp.Schema, Raw: tftypes.NewValue(typ, nil)}}
	ds.Read(ctx, req, resp)
	var model networkInterfacesModel
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.State.Get(ctx, &model)...)
	}
	return resp.Diagnostics, model
}
