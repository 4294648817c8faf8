package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
)

var _ datasource.DataSourceWithConfigure = (*networkInterfacesDataSource)(nil)

func newNetworkInterfacesDataSource() datasource.DataSource {
	return &networkInterfacesDataSource{}
}

// networkInterfacesDataSource turns the network interfaces of VMs into what
// a jit_policy targets: the NSGs that filter their traffic (subnet and NIC
// level) and their private addresses. Onboarding a VM is then one reference
// to its NIC, and the policy follows when the network team moves a VM to
// another subnet or NSG.
type networkInterfacesDataSource struct {
	data *providerData
}

type networkInterfacesModel struct {
	IDs        types.List              `tfsdk:"ids"`
	NSGIDs     types.List              `tfsdk:"network_security_group_ids"`
	PrivateIPs types.List              `tfsdk:"private_ip_addresses"`
	Interfaces []networkInterfaceModel `tfsdk:"interfaces"`
}

type networkInterfaceModel struct {
	ID           types.String `tfsdk:"id"`
	Name         types.String `tfsdk:"name"`
	NSGID        types.String `tfsdk:"network_security_group_id"`
	SubnetIDs    types.List   `tfsdk:"subnet_ids"`
	SubnetNSGIDs types.List   `tfsdk:"subnet_network_security_group_ids"`
	PrivateIPs   types.List   `tfsdk:"private_ip_addresses"`
}

// maxNetworkInterfaces bounds one data source's reads (each NIC costs one
// read plus one per subnet); larger fleets are better split by role anyway.
const maxNetworkInterfaces = 50

// nicReadConcurrency is how many NICs are read at once: enough to hide
// latency, few enough to stay far from ARM's read throttling.
const nicReadConcurrency = 4

func (d *networkInterfacesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_network_interfaces"
}

func (d *networkInterfacesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	computedList := func(desc string) schema.ListAttribute {
		return schema.ListAttribute{ElementType: types.StringType, Computed: true, MarkdownDescription: desc}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "The network security groups and private IP addresses of virtual machines' network interfaces: " +
			"what a `jit_policy` needs to protect those VMs. Give it the VMs' NIC ids and feed " +
			"`network_security_group_ids` and `private_ip_addresses` to the policy's `network_security_group_ids` and " +
			"`destination_address_prefixes`.\n\n" +
			"Azure filters inbound traffic to a VM first with the NSG of its subnet, then with the NSG of its NIC; " +
			"a JIT policy on either level keeps the ports closed, and a policy on both also survives someone adding an " +
			"allow rule to one of them. A NIC with no NSG at either level gets a warning: there is nothing to enforce " +
			"access on until an NSG is associated with the NIC or its subnet.",
		Attributes: map[string]schema.Attribute{
			"ids": schema.ListAttribute{
				ElementType: types.StringType,
				Required:    true,
				MarkdownDescription: fmt.Sprintf("The Azure resource ids of the network interfaces, e.g. `azurerm_network_interface.web.id` "+
					"or `azurerm_linux_virtual_machine.web.network_interface_ids`; 1 to %d.", maxNetworkInterfaces),
				Validators: []validator.List{networkInterfaceIDs{}},
			},
			"network_security_group_ids": computedList("The distinct NSGs that filter traffic to these NICs: for each NIC in `ids` order, " +
				"the NSGs of its subnets, then its own NSG."),
			"private_ip_addresses": computedList("The distinct private IP addresses of all the NICs' IP configurations, in `ids` order."),
			"interfaces": schema.ListNestedAttribute{
				Computed:            true,
				MarkdownDescription: "Each network interface, in `ids` order.",
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"id":   schema.StringAttribute{Computed: true, MarkdownDescription: "The NIC's resource id as Azure spells it."},
						"name": schema.StringAttribute{Computed: true, MarkdownDescription: "The NIC's name."},
						"network_security_group_id": schema.StringAttribute{Computed: true,
							MarkdownDescription: "The NSG associated with the NIC itself; null when there is none."},
						"subnet_ids": computedList("The distinct subnets of the NIC's IP configurations."),
						"subnet_network_security_group_ids": computedList("The distinct NSGs associated with those subnets " +
							"(subnets without one contribute nothing)."),
						"private_ip_addresses": computedList("The private IP addresses of the NIC's IP configurations."),
					},
				},
			},
		},
	}
}

func (d *networkInterfacesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.data = configureData(req.ProviderData, &resp.Diagnostics)
}

func (d *networkInterfacesDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var model networkInterfacesModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &model)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var ids []string
	resp.Diagnostics.Append(model.IDs.ElementsAs(ctx, &ids, false)...)
	if resp.Diagnostics.HasError() {
		return
	}

	nics, errs := d.readAll(ctx, ids)
	for i, err := range errs {
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("ids").AtListIndex(i), "Unable to Read Network Interface",
				azureErrorDetail("read network interface", ids[i], err))
		}
	}
	if resp.Diagnostics.HasError() {
		return
	}

	var nsgs, ips distinct
	model.Interfaces = make([]networkInterfaceModel, 0, len(nics))
	for i, nic := range nics {
		var subnets, subnetNSGs, nicIPs distinct
		for _, c := range nic.IPConfigurations {
			subnets.add(c.SubnetID)
			subnetNSGs.add(c.SubnetNSGID)
			nicIPs.add(c.PrivateIP)
		}
		nsgs.add(subnetNSGs...)
		nsgs.add(nic.NSGID)
		ips.add(nicIPs...)
		if nic.NSGID == "" && len(subnetNSGs) == 0 {
			resp.Diagnostics.AddAttributeWarning(path.Root("ids").AtListIndex(i), "Network Interface Has No Network Security Group",
				fmt.Sprintf("Neither network interface %q nor its subnets (%s) have a network security group, so a JIT policy has "+
					"nothing to enforce access on for it: its ports are as open as the network around it allows.\n\n"+
					"Associate an NSG with the NIC or with its subnet (for example with azurerm_network_interface_security_group_association "+
					"or azurerm_subnet_network_security_group_association) and target that NSG with the policy, or remove the NIC from `ids`.",
					nic.ID, strings.Join(subnets, ", ")))
		}
		m := networkInterfaceModel{
			ID:           types.StringValue(nic.ID),
			Name:         types.StringValue(nic.Name),
			NSGID:        types.StringNull(),
			SubnetIDs:    subnets.list(),
			SubnetNSGIDs: subnetNSGs.list(),
			PrivateIPs:   nicIPs.list(),
		}
		if nic.NSGID != "" {
			m.NSGID = types.StringValue(nic.NSGID)
		}
		model.Interfaces = append(model.Interfaces, m)
	}
	model.NSGIDs = nsgs.list()
	model.PrivateIPs = ips.list()
	resp.Diagnostics.Append(resp.State.Set(ctx, &model)...)
}

// readAll reads the NICs a few at a time. A NIC listed twice is read once.
func (d *networkInterfacesDataSource) readAll(ctx context.Context, ids []string) ([]azure.NetworkInterface, []error) {
	nics := make([]azure.NetworkInterface, len(ids))
	errs := make([]error, len(ids))
	first := map[string]int{} // lower-cased id -> index of its first mention
	var wg sync.WaitGroup
	sem := make(chan struct{}, nicReadConcurrency)
	for i, id := range ids {
		if _, dup := first[strings.ToLower(id)]; dup {
			continue
		}
		first[strings.ToLower(id)] = i
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			nics[i], errs[i] = d.data.client.GetNetworkInterface(ctx, id)
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if j := first[strings.ToLower(id)]; j != i {
			nics[i], errs[i] = nics[j], nil // the first mention reports any error
		}
	}
	return nics, errs
}

// distinct collects non-empty strings once each, case-insensitively as ARM
// compares ids, keeping the first spelling and order.
type distinct []string

func (d *distinct) add(values ...string) {
	for _, v := range values {
		if v != "" && !slices.ContainsFunc(*d, func(s string) bool { return strings.EqualFold(s, v) }) {
			*d = append(*d, v)
		}
	}
}

// list is the values as a known list ([] when there are none).
func (d distinct) list() types.List {
	l, _ := types.ListValueFrom(context.Background(), types.StringType, nonNil(d))
	return l
}

// networkInterfaceIDs checks the ids argument at plan time: 1 to
// maxNetworkInterfaces network interface ids, so that a typo or the id of
// the VM itself fails before any Azure call.
type networkInterfaceIDs struct{}

var _ validator.List = networkInterfaceIDs{}

const nicIDShape = "/subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Network/networkInterfaces/<name>"

func (networkInterfaceIDs) Description(context.Context) string {
	return fmt.Sprintf("1 to %d network interface ids: %s", maxNetworkInterfaces, nicIDShape)
}

func (v networkInterfaceIDs) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (networkInterfaceIDs) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	elems := req.ConfigValue.Elements()
	if n := len(elems); n < 1 || n > maxNetworkInterfaces {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Number of Network Interfaces",
			fmt.Sprintf("Give 1 to %d network interface ids; got %d. Split larger sets of VMs into several data sources, for example one per role.",
				maxNetworkInterfaces, n))
		return
	}
	for i, e := range elems {
		s, ok := e.(types.String)
		if !ok || s.IsUnknown() {
			continue // known at apply, validated then by Azure
		}
		if s.IsNull() {
			resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Invalid Network Interface ID", "A network interface id must not be null.")
			continue
		}
		if _, err := azure.ParseNetworkInterfaceID(s.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Invalid Network Interface ID",
				fmt.Sprintf("%q is not a network interface id.\n\nExpected %s. For a VM, use the ids in its network_interface_ids.",
					s.ValueString(), nicIDShape))
		}
	}
}
