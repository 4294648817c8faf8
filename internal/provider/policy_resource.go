package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/setdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/provider/validators"
)

var (
	_ resource.ResourceWithConfigure      = (*policyResource)(nil)
	_ resource.ResourceWithImportState    = (*policyResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*policyResource)(nil)
	_ resource.ResourceWithValidateConfig = (*policyResource)(nil)
	_ resource.ResourceWithUpgradeState   = (*policyResource)(nil)
)

func newPolicyResource() resource.Resource { return &policyResource{} }

// policyResource is jit_policy: which ports of which destinations behind
// which NSGs are closed by default, who may ever ask for them and for how
// long. All of it is written onto the NSGs as rules, so any workspace (and
// jitd) reads the same policy back from Azure.
type policyResource struct {
	data *providerData
}

const (
	defaultBandStart = 100
	defaultBandEnd   = 199
	policyIDSep      = "@"
)

type policyModel struct {
	ID                  types.String   `tfsdk:"id"`
	Name                types.String   `tfsdk:"name"`
	NSGIDs              types.Set      `tfsdk:"network_security_group_ids"`
	DestinationPrefixes types.Set      `tfsdk:"destination_address_prefixes"`
	AllowedSources      types.Set      `tfsdk:"allowed_source_address_prefixes"`
	Ports               types.Set      `tfsdk:"ports"`
	Band                types.Object   `tfsdk:"priority_band"`
	FailOnBypass        types.Bool     `tfsdk:"fail_on_bypass"`
	FailOnStanding      types.Bool     `tfsdk:"fail_on_standing_access"`
	EndSessions         types.Bool     `tfsdk:"end_sessions_at_expiry"`
	FailOnAdmin         types.Bool     `tfsdk:"fail_on_admin_override"`
	AdminOverrides      types.List     `tfsdk:"admin_rule_overrides"`
	RuleNames           types.List     `tfsdk:"rule_names"`
	BypassingRules      types.List     `tfsdk:"bypassing_rules"`
	StandingAccess      types.List     `tfsdk:"standing_access"`
	Timeouts            timeouts.Value `tfsdk:"timeouts"`
}

type portModel struct {
	Port        types.Int64  `tfsdk:"port"`
	Protocol    types.String `tfsdk:"protocol"`
	MaxDuration types.String `tfsdk:"max_duration"`
}

type bandModel struct {
	Start types.Int64 `tfsdk:"start"`
	End   types.Int64 `tfsdk:"end"`
}

var (
	portAttrTypes = map[string]attr.Type{
		"port": types.Int64Type, "protocol": types.StringType, "max_duration": types.StringType,
	}
	bandAttrTypes   = map[string]attr.Type{"start": types.Int64Type, "end": types.Int64Type}
	bypassAttrTypes = map[string]attr.Type{
		"network_security_group_id": types.StringType, "name": types.StringType, "priority": types.Int64Type,
		"port": types.Int64Type, "protocol": types.StringType, "reason": types.StringType,
	}
)

func (r *policyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_policy"
}

func (r *policyResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		// Version 1: destinations, allowed sources and ports are sets, not
		// lists (see UpgradeState).
		Version: 1,
		MarkdownDescription: "Closes management ports behind one or more network security groups by default, and " +
			"records on each NSG who may ever ask for access and for how long. Creating it writes a deny-all rule " +
			"(and, unless any source may ask, a guard rule denying every source outside `allowed_source_address_prefixes`) " +
			"per protocol into the policy's priority band; `jit_access_grant` resources then open single ports " +
			"for single addresses between them. Rules outside the `jit-` namespace are never modified.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "`<name>@<nsg id>[,<nsg id>...]`: the policy's name and its NSGs, all a grant needs to find it on Azure.",
			},
			"name": schema.StringAttribute{
				Required: true,
				MarkdownDescription: "The policy's name, part of every rule name (`jit-<name>-...`): 1–40 lowercase letters, digits and " +
					"single hyphens, starting with a letter and ending with a letter or digit (`web-ssh`; not `Web`, `web-`, `web--ssh`). " +
					"Changing it replaces the policy.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"network_security_group_ids": schema.SetAttribute{
				Required:    true,
				ElementType: types.StringType,
				MarkdownDescription: "The NSGs to enforce on: the VM's NIC-level NSG and/or its subnet-level NSG " +
					"(see the `jit_network_interfaces` data source).",
				Validators: []validator.Set{
					setvalidator.SizeBetween(1, 100),
					setvalidator.ValueStringsAre(validators.NetworkSecurityGroupID()),
				},
			},
			"destination_address_prefixes": schema.SetAttribute{
				Optional:    true,
				Computed:    true,
				ElementType: types.StringType,
				MarkdownDescription: "The protected addresses: the VMs' private IPs or CIDRs, in any order. Defaults to `[\"*\"]`, " +
					"every address behind the NSGs.",
				Default:    setdefault.StaticValue(types.SetValueMust(types.StringType, []attr.Value{types.StringValue("*")})),
				Validators: []validator.Set{setvalidator.SizeAtLeast(1)},
			},
			"allowed_source_address_prefixes": schema.SetAttribute{
				Required:    true,
				ElementType: types.StringType,
				MarkdownDescription: "The addresses that may ever be granted access (IPs or CIDRs, IPv4 and IPv6), in any order. Azure " +
					"itself refuses any grant from elsewhere: a guard rule denies every other source. `[\"*\"]` lets any source ask.",
				Validators: []validator.Set{setvalidator.SizeAtLeast(1)},
			},
			"ports": schema.SetNestedAttribute{
				Required:            true,
				MarkdownDescription: "The protected ports, in any order, each with its protocol and the longest grant allowed.",
				Validators:          []validator.Set{setvalidator.SizeAtLeast(1)},
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"port": schema.Int64Attribute{
							Required:            true,
							MarkdownDescription: "The port, 1–65535.",
						},
						"protocol": schema.StringAttribute{
							Optional:            true,
							Computed:            true,
							Default:             stringdefault.StaticString("Tcp"),
							MarkdownDescription: "`Tcp` (default), `Udp` or `*` (both).",
						},
						"max_duration": schema.StringAttribute{
							Required:            true,
							MarkdownDescription: "The longest grant for this port, in Go duration syntax (`30m`, `4h`): between 5m and 24h.",
						},
					},
				},
			},
			"priority_band": schema.SingleNestedAttribute{
				Optional: true,
				Computed: true,
				MarkdownDescription: "The NSG priorities this policy owns on every target NSG. Guard rules take the top six, deny-all " +
					"rules the bottom six, grants the rest. Bands of policies on the same NSG must not overlap, and no other rule " +
					"may sit inside it. Defaults to 100–199.",
				Default: objectdefault.StaticValue(types.ObjectValueMust(bandAttrTypes, map[string]attr.Value{
					"start": types.Int64Value(defaultBandStart), "end": types.Int64Value(defaultBandEnd),
				})),
				Attributes: map[string]schema.Attribute{
					"start": schema.Int64Attribute{Required: true, MarkdownDescription: "The first (highest-precedence) priority, ≥ 100."},
					"end":   schema.Int64Attribute{Required: true, MarkdownDescription: "The last priority, ≤ 4096; at least start + 12."},
				},
			},
			"fail_on_bypass": schema.BoolAttribute{
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
				MarkdownDescription: "Fail the plan when a rule outside the policy (for example a pre-existing `Allow 22 from Internet` " +
					"at a higher precedence) would still let a protected port in. By default it is a warning and listed in `bypassing_rules`.",
			},
			"fail_on_standing_access": schema.BoolAttribute{
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
				MarkdownDescription: "Fail the plan when a rule outside the policy (for example `Allow 22 from` the VPN pool, above the " +
					"band or inside it) lets allowed sources reach a protected port with no grant. By default it is a warning " +
					"and listed in `standing_access`.",
			},
			"end_sessions_at_expiry": schema.BoolAttribute{
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
				MarkdownDescription: "End live sessions when access ends: the provider sets Azure's `flushConnection` on the " +
					"policy's NSGs, so that Azure re-evaluates established flows whenever the NSG's rules change, and a session " +
					"opened during a grant is cut when the grant's rule is deleted at expiry. Without it an SSH session opened " +
					"during a grant keeps running after expiry (NSGs are stateful). The setting belongs to the whole NSG: every " +
					"other rule's established flows are re-evaluated too, and turning it on re-evaluates every flow on the NSG " +
					"once. Destroying the policy, or turning the option off, puts back the value found before, unless another " +
					"policy on the NSG asks for it. Defaults to `false`.",
			},
			"fail_on_admin_override": schema.BoolAttribute{
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
				MarkdownDescription: "Fail the plan when an Azure Virtual Network Manager security admin rule decides a " +
					"protected port before any NSG (see `admin_rule_overrides`). By default it is a warning.",
			},
			"admin_rule_overrides": adminOverrideAttribute(),
			"rule_names": schema.ListAttribute{
				Computed:            true,
				ElementType:         types.StringType,
				MarkdownDescription: "The names of the policy's guard and deny-all rules, the same on every NSG.",
			},
			"bypassing_rules": schema.ListNestedAttribute{
				Computed: true,
				MarkdownDescription: "Rules outside the policy that let a protected port in from a source the policy does not allow, " +
					"ahead of its rules: while any is listed, the ports are not really closed. They are never modified.",
				NestedObject: schema.NestedAttributeObject{Attributes: ruleFindingAttributes("Why it bypasses the policy.")},
			},
			"standing_access": schema.ListNestedAttribute{
				Computed: true,
				MarkdownDescription: "Rules outside the policy, above its band or inside it ahead of its deny-all rules, that let " +
					"allowed sources reach a protected port with no grant: while any is listed, those sources have standing access " +
					"to the port. A rule already listed in `bypassing_rules` for a port is not repeated here. They are never modified.",
				NestedObject: schema.NestedAttributeObject{Attributes: ruleFindingAttributes("Which allowed sources it lets in, and ahead of which rule.")},
			},
			"timeouts": timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true}),
		},
	}
}

// UpgradeState upgrades states of schema version 0, where destinations,
// allowed sources and ports were lists: Terraform compared them by position,
// so a policy imported (read back in canonical order) planned a change
// against a configuration listing them in another order. The values are
// the same; only their type changes.
func (r *policyResource) UpgradeState(ctx context.Context) map[int64]resource.StateUpgrader {
	v0 := policySchemaV0(ctx)
	return map[int64]resource.StateUpgrader{
		0: {PriorSchema: &v0, StateUpgrader: upgradePolicyStateV0},
	}
}

// policyModelV0 is the state of schema version 0. Its last two attributes
// came late in that version: states written before them read as null.
type policyModelV0 struct {
	ID                  types.String   `tfsdk:"id"`
	Name                types.String   `tfsdk:"name"`
	NSGIDs              types.Set      `tfsdk:"network_security_group_ids"`
	DestinationPrefixes types.List     `tfsdk:"destination_address_prefixes"`
	AllowedSources      types.List     `tfsdk:"allowed_source_address_prefixes"`
	Ports               types.List     `tfsdk:"ports"`
	Band                types.Object   `tfsdk:"priority_band"`
	FailOnBypass        types.Bool     `tfsdk:"fail_on_bypass"`
	RuleNames           types.List     `tfsdk:"rule_names"`
	BypassingRules      types.List     `tfsdk:"bypassing_rules"`
	Timeouts            timeouts.Value `tfsdk:"timeouts"`
	FailOnStanding      types.Bool     `tfsdk:"fail_on_standing_access"`
	StandingAccess      types.List     `tfsdk:"standing_access"`
}

// policySchemaV0 is schema version 0, as far as reading a state needs it:
// the attributes and their types.
func policySchemaV0(ctx context.Context) schema.Schema {
	findings := schema.ListNestedAttribute{Computed: true, NestedObject: schema.NestedAttributeObject{
		Attributes: map[string]schema.Attribute{
			"network_security_group_id": schema.StringAttribute{Computed: true},
			"name":                      schema.StringAttribute{Computed: true},
			"priority":                  schema.Int64Attribute{Computed: true},
			"port":                      schema.Int64Attribute{Computed: true},
			"protocol":                  schema.StringAttribute{Computed: true},
			"reason":                    schema.StringAttribute{Computed: true},
		},
	}}
	return schema.Schema{
		Attributes: map[string]schema.Attribute{
			"id":                              schema.StringAttribute{Computed: true},
			"name":                            schema.StringAttribute{Required: true},
			"network_security_group_ids":      schema.SetAttribute{Required: true, ElementType: types.StringType},
			"destination_address_prefixes":    schema.ListAttribute{Optional: true, Computed: true, ElementType: types.StringType},
			"allowed_source_address_prefixes": schema.ListAttribute{Required: true, ElementType: types.StringType},
			"ports": schema.ListNestedAttribute{Required: true, NestedObject: schema.NestedAttributeObject{
				Attributes: map[string]schema.Attribute{
					"port":         schema.Int64Attribute{Required: true},
					"protocol":     schema.StringAttribute{Optional: true, Computed: true},
					"max_duration": schema.StringAttribute{Required: true},
				},
			}},
			"priority_band": schema.SingleNestedAttribute{Optional: true, Computed: true, Attributes: map[string]schema.Attribute{
				"start": schema.Int64Attribute{Required: true},
				"end":   schema.Int64Attribute{Required: true},
			}},
			"fail_on_bypass":          schema.BoolAttribute{Optional: true, Computed: true},
			"fail_on_standing_access": schema.BoolAttribute{Optional: true, Computed: true},
			"rule_names":              schema.ListAttribute{Computed: true, ElementType: types.StringType},
			"bypassing_rules":         findings,
			"standing_access":         findings,
			"timeouts":                timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true}),
		},
	}
}

// upgradePolicyStateV0 turns the lists of a version 0 state into sets,
// element for element. A state from before fail_on_standing_access gets
// its default; standing_access stays null until the next refresh reads it.
func upgradePolicyStateV0(ctx context.Context, req resource.UpgradeStateRequest, resp *resource.UpgradeStateResponse) {
	var old policyModelV0
	resp.Diagnostics.Append(req.State.Get(ctx, &old)...)
	if resp.Diagnostics.HasError() {
		return
	}
	toSet := func(l types.List, elem attr.Type) types.Set {
		switch {
		case l.IsNull():
			return types.SetNull(elem)
		case l.IsUnknown():
			return types.SetUnknown(elem)
		}
		v, diags := types.SetValue(elem, l.Elements())
		resp.Diagnostics.Append(diags...)
		return v
	}
	m := policyModel{
		ID:                  old.ID,
		Name:                old.Name,
		NSGIDs:              old.NSGIDs,
		DestinationPrefixes: toSet(old.DestinationPrefixes, types.StringType),
		AllowedSources:      toSet(old.AllowedSources, types.StringType),
		Ports:               toSet(old.Ports, types.ObjectType{AttrTypes: portAttrTypes}),
		Band:                old.Band,
		FailOnBypass:        old.FailOnBypass,
		FailOnStanding:      old.FailOnStanding,
		EndSessions:         types.BoolValue(false),
		FailOnAdmin:         types.BoolValue(false),
		AdminOverrides:      types.ListNull(types.ObjectType{AttrTypes: adminAttrTypes}),
		RuleNames:           old.RuleNames,
		BypassingRules:      old.BypassingRules,
		StandingAccess:      old.StandingAccess,
		Timeouts:            old.Timeouts,
	}
	if m.FailOnStanding.IsNull() {
		m.FailOnStanding = types.BoolValue(false)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// ruleFindingAttributes are the attributes of one rule reported in
// bypassing_rules or standing_access; reason says what the rule does.
func ruleFindingAttributes(reason string) map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"network_security_group_id": schema.StringAttribute{Computed: true, MarkdownDescription: "The NSG holding the rule."},
		"name":                      schema.StringAttribute{Computed: true, MarkdownDescription: "The rule's name."},
		"priority":                  schema.Int64Attribute{Computed: true, MarkdownDescription: "The rule's priority."},
		"port":                      schema.Int64Attribute{Computed: true, MarkdownDescription: "The protected port it lets in."},
		"protocol":                  schema.StringAttribute{Computed: true, MarkdownDescription: "The protected port's protocol."},
		"reason":                    schema.StringAttribute{Computed: true, MarkdownDescription: reason},
	}
}

func (r *policyResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = configureData(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig checks everything that needs no Azure call, so that
// `terraform validate` and every plan report it with the attribute's line.
func (r *policyResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m policyModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	in, known := policyInput(ctx, m, &resp.Diagnostics)
	if !known || resp.Diagnostics.HasError() {
		return
	}
	p, err := jit.NewPolicy(in)
	if err != nil {
		addPolicyErrors(&resp.Diagnostics, err)
		return
	}
	// The NSG stores the allowed sources as the complement of the guard, so
	// they read back merged and minimal: say so where the configuration
	// differs, or an import (which reads them back) plans an update.
	if !slices.Equal(sortedCopy(in.AllowedSources), sortedCopy(p.AllowedSources)) {
		resp.Diagnostics.AddAttributeWarning(path.Root("allowed_source_address_prefixes"), "Allowed Sources Read Back Merged",
			fmt.Sprintf("The NSG records allowed_source_address_prefixes as %s (adjacent ranges merged, single addresses "+
				"without a prefix length). Write them "+
				"that way so that an import or another workspace reads back exactly this configuration; as written, an "+
				"imported policy plans an update that changes nothing on Azure.", strings.Join(p.AllowedSources, ", ")))
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// ModifyPlan checks the policy against what is on its NSGs now — other
// policies' bands, foreign rules in the band, Azure's limits, rules that
// would bypass it or give allowed sources standing access — so that a
// problem fails the plan and nothing is written.
func (r *policyResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if r.data == nil {
		return
	}
	// A destroy is checked in Delete, not here: at plan time the grants of
	// this policy may be planned for destruction in the same run.
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan policyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	in, known := policyInput(ctx, plan, &resp.Diagnostics)
	if !known || resp.Diagnostics.HasError() {
		return
	}
	p, err := jit.NewPolicy(in)
	if err != nil {
		return // ValidateConfig reported it
	}
	nsgIDs := setStrings(ctx, plan.NSGIDs, &resp.Diagnostics)
	creating := req.State.Raw.IsNull()
	// A plan that leaves the policy and its NSGs as they are writes
	// nothing, so what would only stop a write (a foreign rule planted in
	// the band, another policy's band) does not fail it; what the rules
	// let in is still reported below, as bypasses and standing access.
	unchanged := !creating && r.sameAsState(ctx, req, p, plan.NSGIDs)

	// On create the id stays unknown until apply: a grant in the same
	// configuration then waits for the policy to exist before it is checked
	// against it, instead of finding no policy on the NSG at plan time.
	if !creating && !hasUnknownElement(plan.NSGIDs) {
		plan.ID = types.StringValue(policyID(p.Name, nsgIDs))
	}
	plan.RuleNames = stringList(p.GuardAndDenyNames())

	var bypasses, standing []nsgBypass
	for _, nsgID := range nsgIDs {
		rules, err := r.data.rules.ListRules(ctx, nsgID)
		if err != nil {
			if errors.Is(err, azure.ErrNotFound) {
				resp.Diagnostics.AddAttributeError(path.Root("network_security_group_ids"), "Network Security Group Not Found",
					fmt.Sprintf("The network security group %q does not exist, or the identity Terraform runs as cannot read it.", nsgID))
				continue
			}
			resp.Diagnostics.AddError("Unable to Read Network Security Group", azureErrorDetail("read the rules of", nsgID, err))
			continue
		}
		view, err := r.data.rules.View(ctx, nsgID)
		if err != nil {
			resp.Diagnostics.AddError("Unable to Read Network Security Group", azureErrorDetail("read the rules of", nsgID, err))
			continue
		}
		if existing, ok := view.Policies[p.Name]; ok && creating {
			if existing.Problem == "" && existing.Policy.Equal(p) {
				// Exactly this policy: most likely an apply interrupted after
				// Azure accepted the write and before Terraform saved state.
				// Taking it over converges; writing it again changes nothing.
				resp.Diagnostics.AddWarning("Adopting Existing JIT Policy",
					fmt.Sprintf("Policy %q is already on %s exactly as configured (left by an interrupted apply, or written "+
						"by another configuration). This resource takes it over. If another configuration manages it, remove "+
						"one of the two.", p.Name, nsgID))
				continue
			}
			resp.Diagnostics.AddAttributeError(path.Root("name"), "JIT Policy Already Exists",
				fmt.Sprintf("A JIT policy named %q is already on %s (rules %s), written by another configuration or left behind. "+
					"Import it (terraform import <address> '%s') or choose another name.",
					p.Name, nsgID, strings.Join(existing.RuleNames, ", "), policyID(p.Name, nsgIDs)))
			continue
		}
		if !unchanged {
			if err := jit.Conflicts(p, nsgID, rules); err != nil {
				addFieldErrors(&resp.Diagnostics, "JIT Policy Conflicts With Network Security Group", err)
			}
			if !creating {
				r.checkGrantsFitBand(p, nsgID, view, &resp.Diagnostics)
			}
		}
		sessionsDiagnostics(p, nsgID, view, &resp.Diagnostics)
		for _, b := range p.Bypasses(rules) {
			bypasses = append(bypasses, nsgBypass{nsgID: nsgID, Bypass: b})
		}
		for _, b := range p.StandingAccess(rules) {
			standing = append(standing, nsgBypass{nsgID: nsgID, Bypass: b})
		}
	}
	if len(bypasses) > 0 {
		summary, detail := bypassDiagnostic(p.Name, bypasses)
		if plan.FailOnBypass.ValueBool() {
			resp.Diagnostics.AddAttributeError(path.Root("fail_on_bypass"), summary, detail+
				"\n\nfail_on_bypass is true, so nothing was written. Remove or narrow those rules, or set fail_on_bypass = false.")
		} else {
			resp.Diagnostics.AddWarning(summary, detail)
		}
	}
	adminDiagnostics(p, r.adminOverrides(ctx, p, nsgIDs, &resp.Diagnostics), plan.FailOnAdmin.ValueBool(), &resp.Diagnostics)
	if len(standing) > 0 {
		summary, detail := standingDiagnostic(p.Name, standing)
		if plan.FailOnStanding.ValueBool() {
			resp.Diagnostics.AddAttributeError(path.Root("fail_on_standing_access"), summary, detail+
				"\n\nfail_on_standing_access is true, so nothing was written. Remove or narrow those rules, or set fail_on_standing_access = false.")
		} else {
			resp.Diagnostics.AddWarning(summary, detail)
		}
	}
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// sameAsState reports whether the planned policy and NSGs are those of the
// prior state: then nothing is written to any NSG.
func (r *policyResource) sameAsState(ctx context.Context, req resource.ModifyPlanRequest, p jit.Policy, nsgs types.Set) bool {
	var state policyModel
	var diags diag.Diagnostics
	diags.Append(req.State.Get(ctx, &state)...)
	if diags.HasError() || state.Ports.IsNull() || !state.NSGIDs.Equal(nsgs) {
		return false
	}
	in, known := policyInput(ctx, state, &diags)
	if !known || diags.HasError() {
		return false
	}
	old, err := jit.NewPolicy(in)
	return err == nil && old.Equal(p)
}

func (r *policyResource) checkGrantsFitBand(p jit.Policy, nsgID string, view jit.NSGView, diags *diag.Diagnostics) {
	lo, hi := p.Band.GrantRange()
	for _, g := range view.Grants {
		if g.Policy != p.Name || (g.Rule.Priority >= lo && g.Rule.Priority <= hi) {
			continue
		}
		if !g.ExpiresAt.After(r.data.clock.Now()) {
			continue
		}
		diags.AddAttributeError(path.Root("priority_band"), "Active Grant Outside the New Band",
			fmt.Sprintf("Grant %s (rule %s, priority %d, by %s, until %s) on %s would fall outside the new grant range %d–%d. "+
				"Wait until it expires or remove it, then change the band.",
				g.ID, g.Rule.Name, g.Rule.Priority, g.Requester, g.ExpiresAt.UTC().Format(time.RFC3339), nsgID, lo, hi))
	}
}

func (r *policyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan policyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, 30*time.Minute)
	resp.Diagnostics.Append(diags...)
	p, nsgIDs := r.policyFromModel(ctx, plan, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = tflog.SetField(ctx, "policy", p.Name)

	// Checked again at apply: another workspace may have written since the plan.
	if !r.checkConflicts(ctx, p, nsgIDs, "Unable to Create JIT Policy", &resp.Diagnostics) {
		return
	}

	var mu sync.Mutex
	written := map[string][]string{}
	sessions := loadSessionSettings(ctx, nil, &resp.Diagnostics)
	failedNSG, err := forEachNSG(ctx, nsgIDs, func(ctx context.Context, nsgID string) error {
		rules, err := r.data.rules.ListRules(ctx, nsgID)
		if err != nil {
			return err
		}
		flush, err := r.sessionsFlush(ctx, sessions, p, nsgID)
		if err != nil {
			return err
		}
		created, err := applyPolicyToNSG(ctx, r.data.rules, nsgID, p, rules, nil, nil, flush)
		mu.Lock()
		written[nsgID] = created
		mu.Unlock()
		if err == nil {
			tflog.Info(ctx, "Policy rules written", map[string]any{"nsg_id": nsgID, "rules": p.GuardAndDenyNames()})
		}
		return err
	})
	if err != nil {
		r.rollback(ctx, written, sessions)
		resp.Diagnostics.AddError("Unable to Create JIT Policy",
			azureErrorDetail("write the policy's rules on", failedNSG, err)+
				"\n\nThe rules this apply had written were removed again; the NSGs are as they were before.")
		return
	}

	sessions.save(ctx, resp.Private, &resp.Diagnostics)
	r.setComputed(ctx, &plan, p, nsgIDs, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// sessionsFlush returns the flushConnection value to write with the
// policy's rules on an NSG it has or keeps (nil: none), reading the NSG's
// current value only when the policy ends sessions or turned the setting
// on there before.
func (r *policyResource) sessionsFlush(ctx context.Context, sessions *sessionSettings, p jit.Policy, nsgID string) (*bool, error) {
	if !p.EndSessions && !sessions.knows(nsgID) {
		return nil, nil
	}
	current, err := r.data.rules.FlushConnection(ctx, nsgID)
	if err != nil {
		return nil, fmt.Errorf("read flushConnection of %s: %w", nsgID, err)
	}
	view, err := r.data.rules.View(ctx, nsgID)
	if err != nil {
		return nil, err
	}
	return sessions.keep(nsgID, p, current, len(otherPoliciesEndingSessions(view, p.Name)) > 0), nil
}

// checkConflicts checks the policy against every NSG as it is now (other
// policies' bands, foreign rules in the band, Azure's limits) before an
// apply writes anything, so a refused apply writes nothing.
func (r *policyResource) checkConflicts(ctx context.Context, p jit.Policy, nsgIDs []string, summary string, diags *diag.Diagnostics) bool {
	for _, nsgID := range nsgIDs {
		rules, err := r.data.rules.ListRules(ctx, nsgID)
		if err != nil {
			diags.AddError(summary, azureErrorDetail("read the rules of", nsgID, err))
			return false
		}
		if err := jit.Conflicts(p, nsgID, rules); err != nil {
			addFieldErrors(diags, "JIT Policy Conflicts With Network Security Group", err)
			return false
		}
	}
	return true
}

// setComputed fills in what an apply computes: the id, the rule names, and
// the bypassing rules and standing access found on the NSGs now.
func (r *policyResource) setComputed(ctx context.Context, m *policyModel, p jit.Policy, nsgIDs []string, diags *diag.Diagnostics) {
	m.ID = types.StringValue(policyID(p.Name, nsgIDs))
	m.RuleNames = stringList(p.GuardAndDenyNames())
	m.BypassingRules, m.StandingAccess = r.findingLists(ctx, p, nsgIDs, diags)
	m.AdminOverrides = adminOverrideList(r.adminOverrides(ctx, p, nsgIDs, diags))
}

// rollback removes the rules a failed create wrote, so that a failure leaves
// no half-written policy behind. Only rules this apply created are removed,
// and flushConnection is put back where it was turned on.
func (r *policyResource) rollback(ctx context.Context, written map[string][]string, sessions *sessionSettings) {
	ctx = context.WithoutCancel(ctx)
	for nsgID, names := range written {
		var changes []azure.RuleChange
		for _, name := range names {
			changes = append(changes, azure.RuleChange{Delete: name})
		}
		if sessions.knows(nsgID) {
			if flush := sessions.release(nsgID, true, false); flush != nil {
				changes = append(changes, azure.RuleChange{FlushConnection: flush})
			}
		}
		if len(changes) == 0 {
			continue
		}
		if _, err := r.data.rules.ApplyRuleChanges(ctx, nsgID, changes); err != nil {
			tflog.Warn(ctx, "Rollback could not delete rules", map[string]any{"nsg_id": nsgID, "rules": names, "error": err.Error()})
		}
	}
}

func (r *policyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state policyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Read(ctx, 5*time.Minute)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	name := state.Name.ValueString()
	nsgIDs := setStrings(ctx, state.NSGIDs, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	// What the state says, when it is complete (not right after an import).
	var want *jit.Policy
	if in, known := policyInput(ctx, state, &resp.Diagnostics); known && !state.Ports.IsNull() {
		if p, err := jit.NewPolicy(in); err == nil {
			want = &p
		}
	}

	var intact []string
	var found *jit.Policy
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if errors.Is(err, azure.ErrNotFound) {
			tflog.Warn(ctx, "NSG of a policy no longer exists", map[string]any{"nsg_id": nsgID})
			continue
		}
		if err != nil {
			resp.Diagnostics.AddError("Unable to Read JIT Policy", azureErrorDetail("read the rules of", nsgID, err))
			return
		}
		decoded, ok := view.Policies[name]
		switch {
		case !ok:
			tflog.Warn(ctx, "Policy rules missing from NSG", map[string]any{"nsg_id": nsgID, "policy": name})
		case decoded.Problem != "":
			tflog.Warn(ctx, "Policy rules on NSG are inconsistent", map[string]any{"nsg_id": nsgID, "policy": name, "problem": decoded.Problem})
		case want != nil && !decoded.Policy.Equal(*want):
			tflog.Warn(ctx, "Policy rules on NSG differ from the configuration", map[string]any{"nsg_id": nsgID, "policy": name})
		default:
			if found == nil {
				p := decoded.Policy
				found = &p
			}
			if found.Equal(decoded.Policy) {
				intact = append(intact, nsgID)
			}
		}
	}
	if found == nil {
		if want == nil {
			resp.Diagnostics.AddError("JIT Policy Not Found",
				fmt.Sprintf("No intact JIT policy named %q was found on %s.", name, strings.Join(nsgIDs, ", ")))
			return
		}
		// Every NSG lost or changed the policy. Keep the resource, with no
		// NSG in it: the plan then rewrites the rules on every NSG of the
		// configuration, rather than forgetting the policy.
		found = want
	}
	if found.EndSessions {
		intact = r.sessionsStillEnded(ctx, name, intact, &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	if want == nil {
		// After an import: everything comes from Azure.
		setPolicyAttributes(&state, *found)
		state.FailOnBypass = types.BoolValue(false)
		state.FailOnStanding = types.BoolValue(false)
	}
	state.NSGIDs = stringSet(intact)
	state.ID = types.StringValue(policyID(name, nsgIDs))
	state.RuleNames = stringList(found.GuardAndDenyNames())
	state.BypassingRules, state.StandingAccess = r.findingLists(ctx, *found, intact, &resp.Diagnostics)
	state.AdminOverrides = adminOverrideList(r.adminOverrides(ctx, *found, intact, &resp.Diagnostics))
	if state.FailOnAdmin.IsNull() {
		state.FailOnAdmin = types.BoolValue(false)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// sessionsStillEnded returns the NSGs of intact that still have
// flushConnection on. One where someone turned it off no longer ends
// sessions at expiry: it is reported and left out, so that the plan writes
// the policy there again, and the setting with it.
func (r *policyResource) sessionsStillEnded(ctx context.Context, name string, intact []string, diags *diag.Diagnostics) []string {
	var out []string
	for _, nsgID := range intact {
		on, err := r.data.rules.FlushConnection(ctx, nsgID)
		if err != nil {
			diags.AddError("Unable to Read JIT Policy", azureErrorDetail("read flushConnection of", nsgID, err))
			return nil
		}
		if !on {
			diags.AddWarning("Live Sessions No Longer End at Expiry",
				fmt.Sprintf("Policy %q ends live sessions at expiry, but flushConnection is off on %s (turned off outside "+
					"Terraform, for example by a whole-NSG write from another tool): sessions opened there during a grant "+
					"would outlive it. The next apply turns it on again.", name, nsgID))
			continue
		}
		out = append(out, nsgID)
	}
	return out
}

func (r *policyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	// The ARM writes that move a grant's rule are named in its audit events.
	ctx, _ = azure.WithWriteRecorder(ctx)
	var plan, state policyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Update(ctx, 30*time.Minute)
	resp.Diagnostics.Append(diags...)
	p, nsgIDs := r.policyFromModel(ctx, plan, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = tflog.SetField(ctx, "policy", p.Name)

	// The NSGs the policy had: the id names them all, even those Read found
	// changed out of band (they are not "gained": nothing revoked there may
	// come back).
	_, oldIDs, _ := parsePolicyID(state.ID.ValueString())
	if len(oldIDs) == 0 {
		oldIDs = setStrings(ctx, state.NSGIDs, &resp.Diagnostics)
	}
	var gained, leaving []string
	for _, id := range nsgIDs {
		if !containsFold(oldIDs, id) {
			gained = append(gained, id)
		}
	}
	for _, id := range oldIDs {
		if !containsFold(nsgIDs, id) {
			leaving = append(leaving, id)
		}
	}
	// Active grants move with the policy, for their remaining window only:
	// to an NSG that joins it, the grants open on every NSG it had.
	var carry []jit.GrantRule
	if len(gained) > 0 {
		var err error
		if carry, err = r.movableGrants(ctx, p.Name, oldIDs); err != nil {
			resp.Diagnostics.AddError("Unable to Update JIT Policy", err.Error())
			return
		}
	}
	// The records of ended grants go to every NSG the policy keeps or gains,
	// so that none is lost with an NSG it leaves.
	var records []jit.EndedRecord
	if len(gained) > 0 || len(leaving) > 0 {
		var err error
		if records, err = r.policyRecords(ctx, p.Name, oldIDs); err != nil {
			resp.Diagnostics.AddError("Unable to Update JIT Policy", err.Error())
			return
		}
	}

	// Conflicts are checked where this apply writes the policy anew: every
	// NSG when the policy changes, else only the NSGs it gains (a flag-only
	// change must not fail on a foreign rule already reported in the band).
	checked := nsgIDs
	if in, known := policyInput(ctx, state, &resp.Diagnostics); known {
		if old, err := jit.NewPolicy(in); err == nil && old.Equal(p) {
			checked = gained
		}
	}
	if !r.checkConflicts(ctx, p, checked, "Unable to Update JIT Policy", &resp.Diagnostics) {
		return
	}
	sessions := loadSessionSettings(ctx, req.Private, &resp.Diagnostics)
	defer sessions.save(ctx, resp.Private, &resp.Diagnostics)
	failedNSG, err := forEachNSG(ctx, nsgIDs, func(ctx context.Context, nsgID string) error {
		rules, err := r.data.rules.ListRules(ctx, nsgID)
		if err != nil {
			return err
		}
		flush, err := r.sessionsFlush(ctx, sessions, p, nsgID)
		if err != nil {
			return err
		}
		var moved []jit.GrantRule
		if containsFold(gained, nsgID) {
			moved = carry
		}
		if _, err = applyPolicyToNSG(ctx, r.data.rules, nsgID, p, rules, moved, records, flush); err != nil {
			return err
		}
		for _, g := range moved {
			r.audit(ctx, g, nsgID, audit.ActionOpen, fmt.Sprintf("policy %s gained this NSG: the grant's rule moved with it, "+
				"for its remaining window until %s", p.Name, g.ExpiresAt.UTC().Format(time.RFC3339)))
		}
		return nil
	})
	if err != nil {
		resp.Diagnostics.AddError("Unable to Update JIT Policy", azureErrorDetail("write the policy's rules on", failedNSG, err)+
			"\n\nRun apply again to finish: each NSG's rules change in one write, so none of them is left half-changed.")
		return
	}
	// An NSG leaving the policy loses its rules, the grants' rules there
	// with them (audited), and the records of ended grants.
	now := r.data.clock.Now()
	failedNSG, err = forEachNSG(ctx, leaving, func(ctx context.Context, nsgID string) error {
		grants, err := r.policyGrants(ctx, p.Name, nsgID)
		if err == nil {
			err = removePolicyFromNSG(ctx, r.data.rules, nsgID, p.Name, grants, sessions)
		}
		if err == nil {
			for _, g := range grants {
				if g.ExpiresAt.After(now) {
					r.audit(ctx, g, nsgID, audit.ActionClose, fmt.Sprintf("policy %s left this NSG: the grant's rule there "+
						"went with it", p.Name))
				}
			}
		}
		return err
	})
	if err != nil {
		resp.Diagnostics.AddError("Unable to Update JIT Policy", azureErrorDetail("remove the policy's rules from", failedNSG, err))
		return
	}

	r.setComputed(ctx, &plan, p, nsgIDs, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *policyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state policyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, 30*time.Minute)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	name := state.Name.ValueString()
	// The state may have lost NSGs to drift; the id still names them all.
	_, nsgIDs, _ := parsePolicyID(state.ID.ValueString())
	if len(nsgIDs) == 0 {
		nsgIDs = setStrings(ctx, state.NSGIDs, &resp.Diagnostics)
	}
	active, err := r.activeGrants(ctx, name, nsgIDs)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Delete JIT Policy", err.Error())
		return
	}
	if len(active) > 0 {
		resp.Diagnostics.AddError("JIT Policy Has Active Grants", activeGrantsDetail(name, active))
		return
	}
	sessions := loadSessionSettings(ctx, req.Private, &resp.Diagnostics)
	failedNSG, err := forEachNSG(ctx, nsgIDs, func(ctx context.Context, nsgID string) error {
		grants, err := r.policyGrants(ctx, name, nsgID)
		if err == nil {
			err = removePolicyFromNSG(ctx, r.data.rules, nsgID, name, grants, sessions)
		}
		if err == nil {
			tflog.Info(ctx, "Policy rules removed", map[string]any{"nsg_id": nsgID, "policy": name})
		}
		return err
	})
	if err != nil {
		resp.Diagnostics.AddError("Unable to Delete JIT Policy", azureErrorDetail("remove the policy's rules from", failedNSG, err))
	}
}

func (r *policyResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	name, nsgIDs, err := parsePolicyID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Import ID", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), policyID(name, nsgIDs))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), name)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("network_security_group_ids"), nsgIDs)...)
}

// activeGrant is a grant rule of a policy that has not expired yet.
type activeGrant struct {
	nsgID string
	grant jit.GrantRule
}

func (r *policyResource) policyGrants(ctx context.Context, policy, nsgID string) ([]jit.GrantRule, error) {
	view, err := r.data.rules.View(ctx, nsgID)
	if errors.Is(err, azure.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the rules of %s: %w", nsgID, err)
	}
	var out []jit.GrantRule
	for _, g := range view.Grants {
		if g.Policy == policy {
			out = append(out, g)
		}
	}
	return out, nil
}

func (r *policyResource) activeGrants(ctx context.Context, policy string, nsgIDs []string) ([]activeGrant, error) {
	now := r.data.clock.Now()
	var active []activeGrant
	for _, nsgID := range nsgIDs {
		grants, err := r.policyGrants(ctx, policy, nsgID)
		if err != nil {
			return nil, err
		}
		for _, g := range grants {
			if g.ExpiresAt.After(now) {
				active = append(active, activeGrant{nsgID: nsgID, grant: g})
			}
		}
	}
	return active, nil
}

// movableGrants returns the policy's grants that are open, unexpired and
// well-formed on every NSG of nsgIDs that still holds the policy: a grant
// missing from one of them was revoked there, and a revoked grant is never
// opened anywhere again.
func (r *policyResource) movableGrants(ctx context.Context, policy string, nsgIDs []string) ([]jit.GrantRule, error) {
	now := r.data.clock.Now()
	count := map[string]int{}
	first := map[string]jit.GrantRule{}
	holders := 0
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if errors.Is(err, azure.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the rules of %s: %w", nsgID, err)
		}
		if _, ok := view.Policies[policy]; !ok {
			continue
		}
		holders++
		for _, g := range view.Grants {
			if g.Policy != policy || !g.ExpiresAt.After(now) {
				continue
			}
			key := strings.ToLower(g.Rule.Name)
			count[key]++
			if _, seen := first[key]; !seen {
				first[key] = g
			}
		}
	}
	var out []jit.GrantRule
	for _, key := range slices.Sorted(maps.Keys(first)) {
		if count[key] == holders {
			out = append(out, first[key])
		}
	}
	return out, nil
}

// policyRecords is the union of the policy's records of ended grants on
// nsgIDs, newest first, at most jit.MaxEndedRecords.
func (r *policyResource) policyRecords(ctx context.Context, policy string, nsgIDs []string) ([]jit.EndedRecord, error) {
	byName := map[string]jit.EndedRecord{}
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if errors.Is(err, azure.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the rules of %s: %w", nsgID, err)
		}
		for _, e := range view.Ended {
			if e.Policy == policy {
				byName[strings.ToLower(e.Rule.Name)] = e
			}
		}
	}
	out := slices.Collect(maps.Values(byName))
	slices.SortFunc(out, func(a, b jit.EndedRecord) int {
		return cmp.Or(b.ExpiresAt.Compare(a.ExpiresAt), strings.Compare(a.Rule.Name, b.Rule.Name))
	})
	return out[:min(len(out), jit.MaxEndedRecords)], nil
}

// audit records a grant's rule moving with its policy.
func (r *policyResource) audit(ctx context.Context, g jit.GrantRule, nsgID string, action audit.Action, reason string) {
	e := audit.Event{Time: r.data.clock.Now(), Action: action, Result: audit.ResultSuccess, Actor: actor, GrantID: g.ID,
		Policy: g.Policy, NSGIDs: []string{nsgID}, RuleName: g.Rule.Name, Source: strings.Join(g.Rule.SourcePrefixes, ","),
		Requester: g.Requester, ExpiresAt: g.ExpiresAt, Reason: reason,
		Approval: r.data.approval, ARMWrites: azure.RecordedWrites(ctx, nsgID)}
	for _, port := range g.Rule.DestinationPorts {
		e.Ports = append(e.Ports, port+"/"+string(g.Rule.Protocol))
	}
	tflog.Info(ctx, "Audit: access grant "+string(action), map[string]any{"grant_id": g.ID, "nsg_id": nsgID, "reason": reason})
	if err := r.data.audit.Emit(ctx, e); err != nil {
		tflog.Error(ctx, "Unable to write audit event", map[string]any{"error": err.Error()})
	}
}

func activeGrantsDetail(policy string, active []activeGrant) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Policy %q still has %d active grant(s); removing it would leave their allow rules with no deny rule after them:\n", policy, len(active))
	for _, a := range active {
		fmt.Fprintf(&b, "  - grant %s (rule %s) by %s, until %s, on %s\n", a.grant.ID, a.grant.Rule.Name, a.grant.Requester,
			a.grant.ExpiresAt.UTC().Format(time.RFC3339), a.nsgID)
	}
	b.WriteString("\nRemove those jit_access_grant resources (or wait until they expire and jitd closes them), then apply again.")
	return b.String()
}

type nsgBypass struct {
	nsgID string
	jit.Bypass
}

func bypassDiagnostic(policy string, bypasses []nsgBypass) (string, string) {
	var b strings.Builder
	fmt.Fprintf(&b, "These rules let ports that policy %q protects in from sources it does not allow, ahead of its deny rules, "+
		"so those ports are NOT closed:\n", policy)
	for _, x := range bypasses {
		fmt.Fprintf(&b, "  - %s (priority %d) on %s: port %d/%s: %s\n", x.Rule.Name, x.Rule.Priority, x.nsgID,
			x.Port.Number, x.Port.Protocol, x.Reason)
	}
	b.WriteString("\nThe provider never modifies rules outside the jit- namespace. Remove or narrow them, or move them below the policy's band.")
	return "Protected Ports Are Still Reachable", b.String()
}

// standingDiagnostic explains rules that give allowed sources access with
// no grant, naming each rule's priority, sources and ports.
func standingDiagnostic(policy string, standing []nsgBypass) (string, string) {
	var b strings.Builder
	fmt.Fprintf(&b, "These rules let allowed sources of policy %q reach ports it protects with no grant, ahead of its deny-all rules, "+
		"so for those sources the ports are always open:\n", policy)
	for _, x := range standing {
		fmt.Fprintf(&b, "  - %s (priority %d) on %s: port %d/%s, sources %s, ports %s: %s\n", x.Rule.Name, x.Rule.Priority, x.nsgID,
			x.Port.Number, x.Port.Protocol, ruleEntries(x.Rule.SourcePrefixes, x.Rule.UsesApplicationSecurityGroups),
			ruleEntries(x.Rule.DestinationPorts, false), x.Reason)
	}
	b.WriteString("\nThe provider never modifies rules outside the jit- namespace. Remove them, narrow their sources to addresses " +
		"outside the policy's allowed sources, or move them below the policy's band; access for allowed sources then goes through grants.")
	return "Allowed Sources Have Standing Access", b.String()
}

// ruleEntries lists a rule's address or port entries for a message.
func ruleEntries(entries []string, asg bool) string {
	if len(entries) == 0 && asg {
		return "(application security groups)"
	}
	return strings.Join(entries, ",")
}

// findingLists reads each NSG once and returns the bypassing rules and
// the standing access found there.
func (r *policyResource) findingLists(ctx context.Context, p jit.Policy, nsgIDs []string, diags *diag.Diagnostics) (bypassing, standing types.List) {
	var bypasses, standings []attr.Value
	item := func(nsgID string, b jit.Bypass) attr.Value {
		return types.ObjectValueMust(bypassAttrTypes, map[string]attr.Value{
			"network_security_group_id": types.StringValue(nsgID),
			"name":                      types.StringValue(b.Rule.Name),
			"priority":                  types.Int64Value(int64(b.Rule.Priority)),
			"port":                      types.Int64Value(int64(b.Port.Number)),
			"protocol":                  types.StringValue(string(b.Port.Protocol)),
			"reason":                    types.StringValue(b.Reason),
		})
	}
	for _, nsgID := range nsgIDs {
		rules, err := r.data.rules.ListRules(ctx, nsgID)
		if err != nil {
			diags.AddWarning("Unable to Check for Bypassing Rules", azureErrorDetail("read the rules of", nsgID, err))
			continue
		}
		for _, b := range p.Bypasses(rules) {
			bypasses = append(bypasses, item(nsgID, b))
		}
		for _, b := range p.StandingAccess(rules) {
			standings = append(standings, item(nsgID, b))
		}
	}
	objects := types.ObjectType{AttrTypes: bypassAttrTypes}
	return types.ListValueMust(objects, nonNilValues(bypasses)), types.ListValueMust(objects, nonNilValues(standings))
}

// addPolicyErrors reports the policy's validation errors (Invalid JIT
// Policy) like addFieldErrors, except that an error about one element of a set
// (allowed_source_address_prefixes[1], ports[0].port) points at the whole
// attribute: a set's elements have no position in the configuration, and
// Terraform would otherwise underline whichever element sits at that index
// in the file. The message still names the value.
func addPolicyErrors(diags *diag.Diagnostics, err error) {
	const summary = "Invalid JIT Policy"
	for _, problem := range unjoin(err) {
		var fe *jit.FieldError
		if errors.As(problem, &fe) {
			if p, ok := attributePath(fe.Path); ok {
				root, _, _ := strings.Cut(fe.Path, "[")
				switch root {
				case "allowed_source_address_prefixes", "destination_address_prefixes", "ports":
					p = path.Root(root)
				}
				diags.AddAttributeError(p, summary, fe.Path+": "+fe.Message)
				continue
			}
		}
		diags.AddError(summary, problem.Error())
	}
}

// policyFromModel builds the domain policy from a known plan.
func (r *policyResource) policyFromModel(ctx context.Context, m policyModel, diags *diag.Diagnostics) (jit.Policy, []string) {
	in, known := policyInput(ctx, m, diags)
	if !known {
		diags.AddError("Unknown Policy Value", "The policy's arguments must be known when it is applied.")
		return jit.Policy{}, nil
	}
	p, err := jit.NewPolicy(in)
	if err != nil {
		addPolicyErrors(diags, err)
		return jit.Policy{}, nil
	}
	return p, setStrings(ctx, m.NSGIDs, diags)
}

// policyInput reads the policy's arguments; known is false while any of
// them is unknown (it depends on a resource not created yet).
func policyInput(ctx context.Context, m policyModel, diags *diag.Diagnostics) (jit.PolicyInput, bool) {
	var in jit.PolicyInput
	if m.Name.IsUnknown() || m.DestinationPrefixes.IsUnknown() || m.AllowedSources.IsUnknown() ||
		m.Ports.IsUnknown() || m.Band.IsUnknown() || m.EndSessions.IsUnknown() {
		return in, false
	}
	if hasUnknownElement(m.DestinationPrefixes) || hasUnknownElement(m.AllowedSources) {
		return in, false
	}
	in.Name = m.Name.ValueString()
	in.EndSessions = m.EndSessions.ValueBool()
	if !m.DestinationPrefixes.IsNull() {
		diags.Append(m.DestinationPrefixes.ElementsAs(ctx, &in.DestinationPrefixes, false)...)
	} else {
		in.DestinationPrefixes = []string{"*"}
	}
	diags.Append(m.AllowedSources.ElementsAs(ctx, &in.AllowedSources, false)...)
	var ports []portModel
	diags.Append(m.Ports.ElementsAs(ctx, &ports, false)...)
	for _, pm := range ports {
		if pm.Port.IsUnknown() || pm.Protocol.IsUnknown() || pm.MaxDuration.IsUnknown() {
			return in, false
		}
		protocol := pm.Protocol.ValueString()
		if pm.Protocol.IsNull() {
			protocol = "Tcp"
		}
		in.Ports = append(in.Ports, jit.PortInput{Number: pm.Port.ValueInt64(), Protocol: protocol, MaxDuration: pm.MaxDuration.ValueString()})
	}
	in.BandStart, in.BandEnd = defaultBandStart, defaultBandEnd
	if !m.Band.IsNull() {
		var band bandModel
		diags.Append(m.Band.As(ctx, &band, basetypes.ObjectAsOptions{})...)
		if band.Start.IsUnknown() || band.End.IsUnknown() {
			return in, false
		}
		in.BandStart, in.BandEnd = band.Start.ValueInt64(), band.End.ValueInt64()
	}
	return in, true
}

// setPolicyAttributes writes a policy read from Azure into the model.
func setPolicyAttributes(m *policyModel, p jit.Policy) {
	m.Name = types.StringValue(p.Name)
	m.EndSessions = types.BoolValue(p.EndSessions)
	m.DestinationPrefixes = stringSet(p.DestinationPrefixes)
	m.AllowedSources = stringSet(p.AllowedSources)
	ports := make([]attr.Value, 0, len(p.Ports))
	for _, port := range p.Ports {
		ports = append(ports, types.ObjectValueMust(portAttrTypes, map[string]attr.Value{
			"port":         types.Int64Value(int64(port.Number)),
			"protocol":     types.StringValue(string(port.Protocol)),
			"max_duration": types.StringValue(formatDuration(port.MaxDuration)),
		}))
	}
	m.Ports = types.SetValueMust(types.ObjectType{AttrTypes: portAttrTypes}, ports)
	m.Band = types.ObjectValueMust(bandAttrTypes, map[string]attr.Value{
		"start": types.Int64Value(int64(p.Band.Start)), "end": types.Int64Value(int64(p.Band.End)),
	})
}

// policyID is "<name>@<nsg id>,<nsg id>..." with the NSG ids sorted, so the
// id does not depend on the order they were listed in.
func policyID(name string, nsgIDs []string) string {
	ids := slices.Clone(nsgIDs)
	sort.Slice(ids, func(i, j int) bool { return strings.ToLower(ids[i]) < strings.ToLower(ids[j]) })
	return name + policyIDSep + strings.Join(ids, ",")
}

func parsePolicyID(id string) (string, []string, error) {
	name, rest, ok := strings.Cut(id, policyIDSep)
	if !ok || name == "" || rest == "" {
		return "", nil, fmt.Errorf("%q is not a JIT policy id: expected <name>@<nsg id>[,<nsg id>...]", id)
	}
	ids := strings.Split(rest, ",")
	for _, nsgID := range ids {
		if err := validators.CheckNetworkSecurityGroupID(nsgID); err != nil {
			return "", nil, fmt.Errorf("%q is not a JIT policy id: %w", id, err)
		}
	}
	return name, ids, nil
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

// nsgConcurrency bounds the NSGs a policy writes at once: writes to
// different NSGs do not wait for each other on Azure, and ARM's write
// budget (a bucket of 200, refilled at 10 a second) absorbs this rate.
const nsgConcurrency = 10

// forEachNSG runs fn for every NSG, up to nsgConcurrency at a time, and
// returns the first error with the NSG it came from. Every started call
// finishes; none is cancelled because another failed.
func forEachNSG(ctx context.Context, nsgIDs []string, fn func(ctx context.Context, nsgID string) error) (string, error) {
	var (
		mu       sync.Mutex
		firstErr error
		firstNSG string
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, nsgConcurrency)
	for _, nsgID := range nsgIDs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, nsgID); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr, firstNSG = err, nsgID
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return firstNSG, firstErr
}
