package provider

import (
	"context"
	"errors"
	"fmt"
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
	if n, ok := jit.MergedSourcesNotice(in.AllowedSources, p); ok {
		addNotices(&resp.Diagnostics, n)
	}
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
	// nothing (jit.PlanCheck.Unchanged).
	unchanged := !creating && r.sameAsState(ctx, req, p, plan.NSGIDs)

	// On create the id stays unknown until apply: a grant in the same
	// configuration then waits for the policy to exist before it is checked
	// against it, instead of finding no policy on the NSG at plan time.
	if !creating && !hasUnknownElement(plan.NSGIDs) {
		plan.ID = types.StringValue(policyID(p.Name, nsgIDs))
	}
	plan.RuleNames = stringList(p.GuardAndDenyNames())

	check := jit.PlanCheck{Creating: creating, ID: policyID(p.Name, nsgIDs), Unchanged: unchanged, Now: r.data.clock.Now()}
	findings := jit.PolicyFindings{Policy: p.Name}
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
		addNotices(&resp.Diagnostics, p.CheckPlanOn(check, nsgID, rules, view, &findings)...)
	}
	if n, ok := findings.BypassNotice(plan.FailOnBypass.ValueBool()); ok {
		addNotices(&resp.Diagnostics, n)
	}
	findings.Admin = r.adminOverrides(ctx, p, nsgIDs, &resp.Diagnostics)
	if n, ok := findings.AdminNotice(plan.FailOnAdmin.ValueBool()); ok {
		addNotices(&resp.Diagnostics, n)
	}
	if n, ok := findings.StandingNotice(plan.FailOnStanding.ValueBool()); ok {
		addNotices(&resp.Diagnostics, n)
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
	return sessions.keep(nsgID, p, current, len(view.PoliciesEndingSessions(p.Name)) > 0), nil
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
			addNotices(diags, jit.ConflictNotices(err)...)
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

	var nsgs []jit.PolicyNSG
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
		nsgs = append(nsgs, jit.PolicyNSG{ID: nsgID, View: view})
	}
	back := jit.ReadBackPolicy(name, want, nsgs)
	for _, on := range back.NSGs {
		fields := map[string]any{"nsg_id": on.NSGID, "policy": name}
		switch on.Status {
		case jit.PolicyMissing:
			tflog.Warn(ctx, "Policy rules missing from NSG", fields)
		case jit.PolicyInconsistent:
			fields["problem"] = on.Problem
			tflog.Warn(ctx, "Policy rules on NSG are inconsistent", fields)
		case jit.PolicyDiffers:
			tflog.Warn(ctx, "Policy rules on NSG differ from the configuration or from its other NSGs", fields)
		}
	}
	// With nothing intact and a configuration, Found is the configuration
	// and no NSG is intact: the plan rewrites the rules on every NSG rather
	// than forgetting the policy.
	found, intact := back.Found, back.Intact
	if found == nil {
		addNotices(&resp.Diagnostics, jit.PolicyNotFoundNotice(name, nsgIDs))
		return
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
			addNotices(diags, jit.SessionsOffNotice(name, nsgID))
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
	u := jit.PolicyUpdate{New: p, OldNSGs: oldIDs, NewNSGs: nsgIDs, Now: r.data.clock.Now()}
	if in, known := policyInput(ctx, state, &resp.Diagnostics); known {
		if old, err := jit.NewPolicy(in); err == nil {
			u.Old = &old
		}
	}
	// What moves is decided from the NSGs the policy had, read only when
	// the NSGs change: otherwise nothing moves.
	if gained, leaving := jit.NSGsChange(oldIDs, nsgIDs); len(gained) > 0 || len(leaving) > 0 {
		var err error
		if u.Had, err = r.views(ctx, oldIDs); err != nil {
			resp.Diagnostics.AddError("Unable to Update JIT Policy", err.Error())
			return
		}
	}
	change := jit.PlanPolicyUpdate(u)
	if !r.checkConflicts(ctx, p, change.Check, "Unable to Update JIT Policy", &resp.Diagnostics) {
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
		moved := change.CarryTo(nsgID)
		if _, err = applyPolicyToNSG(ctx, r.data.rules, nsgID, p, rules, moved, change.Records, flush); err != nil {
			return err
		}
		for _, g := range moved {
			r.audit(ctx, g, nsgID, audit.ActionOpen, jit.GrantMovedReason(p.Name, g))
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
	failedNSG, err = forEachNSG(ctx, change.Leaving, func(ctx context.Context, nsgID string) error {
		grants, err := r.policyGrants(ctx, p.Name, nsgID)
		if err == nil {
			err = removePolicyFromNSG(ctx, r.data.rules, nsgID, p.Name, grants, sessions)
		}
		if err == nil {
			for _, g := range grants {
				if g.ActiveAt(now) {
					r.audit(ctx, g, nsgID, audit.ActionClose, jit.GrantLeftReason(p.Name))
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
	nsgs, err := r.views(ctx, nsgIDs)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Delete JIT Policy", err.Error())
		return
	}
	if n, refused := jit.DeletePolicyNotice(name, jit.ActiveGrants(name, nsgs, r.data.clock.Now())); refused {
		addNotices(&resp.Diagnostics, n)
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

// views reads the NSGs of nsgIDs that exist, for the domain to decide
// from; an NSG that no longer exists holds nothing and is left out.
func (r *policyResource) views(ctx context.Context, nsgIDs []string) ([]jit.PolicyNSG, error) {
	var out []jit.PolicyNSG
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if errors.Is(err, azure.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the rules of %s: %w", nsgID, err)
		}
		out = append(out, jit.PolicyNSG{ID: nsgID, View: view})
	}
	return out, nil
}

// policyGrants reads the grant rules of policy on one NSG (none on an NSG
// that no longer exists).
func (r *policyResource) policyGrants(ctx context.Context, policy, nsgID string) ([]jit.GrantRule, error) {
	nsgs, err := r.views(ctx, []string{nsgID})
	if err != nil || len(nsgs) == 0 {
		return nil, err
	}
	return nsgs[0].View.PolicyGrants(policy), nil
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

// findingLists reads each NSG once and returns the bypassing rules and
// the standing access found there.
func (r *policyResource) findingLists(ctx context.Context, p jit.Policy, nsgIDs []string, diags *diag.Diagnostics) (bypassing, standing types.List) {
	findings := jit.PolicyFindings{Policy: p.Name}
	for _, nsgID := range nsgIDs {
		rules, err := r.data.rules.ListRules(ctx, nsgID)
		if err != nil {
			diags.AddWarning("Unable to Check for Bypassing Rules", azureErrorDetail("read the rules of", nsgID, err))
			continue
		}
		findings.AddNSG(p, nsgID, rules)
	}
	return bypassList(findings.Bypasses), bypassList(findings.Standing)
}

// bypassList is the value of bypassing_rules or standing_access.
func bypassList(found []jit.NSGBypass) types.List {
	values := make([]attr.Value, 0, len(found))
	for _, b := range found {
		values = append(values, types.ObjectValueMust(bypassAttrTypes, map[string]attr.Value{
			"network_security_group_id": types.StringValue(b.NSGID),
			"name":                      types.StringValue(b.Rule.Name),
			"priority":                  types.Int64Value(int64(b.Rule.Priority)),
			"port":                      types.Int64Value(int64(b.Port.Number)),
			"protocol":                  types.StringValue(string(b.Port.Protocol)),
			"reason":                    types.StringValue(b.Reason),
		}))
	}
	return types.ListValueMust(types.ObjectType{AttrTypes: bypassAttrTypes}, values)
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

// policyID is the policy's id (jit.PolicyID).
func policyID(name string, nsgIDs []string) string { return jit.PolicyID(name, nsgIDs) }

// parsePolicyID reads a policy's id (jit.ParsePolicyID).
func parsePolicyID(id string) (string, []string, error) { return jit.ParsePolicyID(id) }

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
