package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/setplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

var (
	_ resource.ResourceWithConfigure   = (*grantResource)(nil)
	_ resource.ResourceWithImportState = (*grantResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*grantResource)(nil)
)

func newGrantResource() resource.Resource { return &grantResource{} }

// grantResource is jit_access_grant: one reviewed request that opens ports
// of a policy for one source, for a bounded time. Expiry and early
// revocation are drift that the next plan reports; a grant never opens
// again without a change to its configuration.
type grantResource struct {
	data *providerData
}

// Grant statuses.
const (
	grantActive  = "active"
	grantExpired = "expired"
	grantRevoked = "revoked"
)

const (
	grantIDSep = "#"
	actor      = "terraform-provider-jit"
)

type grantModel struct {
	ID                types.String   `tfsdk:"id"`
	GrantID           types.String   `tfsdk:"grant_id"`
	PolicyID          types.String   `tfsdk:"policy_id"`
	Ports             types.List     `tfsdk:"ports"`
	Protocol          types.String   `tfsdk:"protocol"`
	Source            types.String   `tfsdk:"source_address_prefix"`
	Duration          types.String   `tfsdk:"duration"`
	Justification     types.String   `tfsdk:"justification"`
	Requester         types.String   `tfsdk:"requester"`
	ApprovalReference types.String   `tfsdk:"approval_reference"`
	StartsAt          types.String   `tfsdk:"starts_at"`
	ExpiresAt         types.String   `tfsdk:"expires_at"`
	Status            types.String   `tfsdk:"status"`
	Open              types.Bool     `tfsdk:"open"`
	RuleName          types.String   `tfsdk:"rule_name"`
	NSGIDs            types.Set      `tfsdk:"network_security_group_ids"`
	Timeouts          timeouts.Value `tfsdk:"timeouts"`
}

func (r *grantResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_access_grant"
}

func (r *grantResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{replaceUnlessImported()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A reviewed request for access: opens the given ports of a `jit_policy` for one source " +
			"address, from apply time for `duration`. The request is checked against the policy as it is written on the " +
			"NSGs, at plan time and again at apply. At expiry `jitd` deletes the rule; the next plan reports the grant as " +
			"expired and asks for the block to be removed. A grant never opens again without a change to its configuration: " +
			"to ask again, open a new request.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "`<policy_id>#<grant_id>`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"grant_id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "A random id, 10 lowercase letters and digits, in the rule's name and description.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"policy_id": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "The `id` of the `jit_policy` (`<name>@<nsg id>[,...]`); the policy itself is read from the NSGs.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"ports": schema.ListAttribute{
				Required:            true,
				ElementType:         types.Int64Type,
				MarkdownDescription: "The ports to open; each must be protected by the policy.",
				Validators:          []validator.List{listvalidator.SizeAtLeast(1)},
				PlanModifiers:       []planmodifier.List{listplanmodifier.RequiresReplace()},
			},
			"protocol": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString("Tcp"),
				MarkdownDescription: "`Tcp` (default), `Udp` or `*`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"source_address_prefix": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "The one address (or CIDR) to let in, IPv4 or IPv6, inside the policy's allowed sources.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"duration": schema.StringAttribute{
				Required: true,
				MarkdownDescription: "How long access lasts, from apply, in Go duration syntax (`30m`, `2h`): at least 1m and at most the " +
					"policy's maximum for every requested port.",
				PlanModifiers: replace,
			},
			"justification": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "Why access is needed; recorded in the audit log, not on the NSG.",
				Validators:          []validator.String{stringvalidator.LengthBetween(1, 1000)},
				PlanModifiers:       replace,
			},
			"requester": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "Who asks (e.g. an e-mail address); recorded on the rule's description and in the audit log.",
				Validators:          []validator.String{stringvalidator.LengthBetween(1, 256)},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"approval_reference": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Where the request was approved, e.g. the pull request URL; recorded in the audit log.",
				PlanModifiers:       replace,
			},
			"starts_at": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "When the rule was written (RFC 3339, UTC).",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"expires_at": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "When access ends (RFC 3339, UTC): `starts_at` + `duration`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"status": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "`active`; `expired` once `expires_at` has passed; `revoked` when a rule was deleted before expiry.",
			},
			"open": schema.BoolAttribute{
				Computed:            true,
				MarkdownDescription: "Whether any of the grant's rules is still on an NSG.",
			},
			"rule_name": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The allow rule's name on every NSG of the policy: `jit-<policy>-g-<grant_id>`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"network_security_group_ids": schema.SetAttribute{
				Computed:            true,
				ElementType:         types.StringType,
				MarkdownDescription: "The NSGs the grant opens on (the policy's).",
				PlanModifiers:       []planmodifier.Set{setplanmodifier.UseStateForUnknown()},
			},
			"timeouts": timeouts.Attributes(ctx, timeouts.Opts{Create: true, Read: true, Update: true, Delete: true}),
		},
	}
}

func (r *grantResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = configureData(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan checks a new request against the policy on its NSGs, and for
// an existing grant turns expiry and revocation into what the user should
// see: a warning, and an update only when a rule is still open.
func (r *grantResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if r.data == nil || req.Plan.Raw.IsNull() {
		return
	}
	var plan grantModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}

	if req.State.Raw.IsNull() {
		policyName, nsgIDs, err := parsePolicyID(plan.PolicyID.ValueString())
		if plan.PolicyID.IsUnknown() {
			return
		}
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("policy_id"), "Invalid Policy ID", err.Error())
			return
		}
		plan.NSGIDs = stringSet(nsgIDs)
		plan.Status = types.StringValue(grantActive)
		plan.Open = types.BoolValue(true)
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
		in, known := grantInput(ctx, plan, &resp.Diagnostics)
		if !known || resp.Diagnostics.HasError() {
			return
		}
		policy, diags := r.readPolicy(ctx, policyName, nsgIDs)
		resp.Diagnostics.Append(diags...)
		if resp.Diagnostics.HasError() {
			return
		}
		if _, err := policy.CheckGrant(in); err != nil {
			addFieldErrors(&resp.Diagnostics, "Access Request Outside the Policy", err)
			// A refused request is audited whenever it is refused: in a pull
			// request's plan as much as at apply.
			_ = r.emit(ctx, requestEvent(ctx, plan, policyName, nsgIDs), audit.ActionRefuse, audit.ResultDenied, err.Error())
		}
		return
	}

	var state grantModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	status := state.Status.ValueString()
	if status == grantActive {
		return
	}
	expires := state.ExpiresAt.ValueString()
	what := fmt.Sprintf("expired at %s", expires)
	if status == grantRevoked {
		what = fmt.Sprintf("was revoked before its expiry (%s): its rule was deleted outside Terraform", expires)
	}
	detail := fmt.Sprintf("Access grant %s for %s %s. Remove this block; to ask again, open a new request.\n\n"+
		"This grant will not open again: nothing in a plan re-opens an expired or revoked grant.",
		state.GrantID.ValueString(), state.Source.ValueString(), what)
	if state.Open.ValueBool() {
		// A rule is still there (no jitd ran, or part of it was revoked):
		// this plan closes it.
		plan.Open = types.BoolValue(false)
		plan.Status = state.Status
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
		detail += "\n\nA rule of this grant is still open on Azure; this apply deletes it."
	}
	resp.Diagnostics.AddWarning(fmt.Sprintf("Access Grant %s", strings.ToUpper(status[:1])+status[1:]), detail)
}

func (r *grantResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan grantModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, 20*time.Minute)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	policyName, nsgIDs, err := parsePolicyID(plan.PolicyID.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("policy_id"), "Invalid Policy ID", err.Error())
		return
	}
	in, _ := grantInput(ctx, plan, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	event := requestEvent(ctx, plan, policyName, nsgIDs)

	// Checked again at apply, against the NSGs as this apply read them (once
	// per NSG for all its grants). Where the rule goes is decided later, in
	// the NSG write itself, against the NSG as it is at that moment.
	policy, diags := r.readPolicy(ctx, policyName, nsgIDs)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		_ = r.emit(ctx, event, audit.ActionRefuse, audit.ResultDenied, diagSummary(resp.Diagnostics))
		return
	}
	spec, err := policy.CheckGrant(in)
	if err != nil {
		addFieldErrors(&resp.Diagnostics, "Access Request Outside the Policy", err)
		_ = r.emit(ctx, event, audit.ActionRefuse, audit.ResultDenied, err.Error())
		return
	}

	id := jit.NewGrantID()
	start := r.data.clock.Now().UTC().Truncate(time.Second)
	expires := start.Add(spec.Duration)
	event.GrantID, event.RuleName, event.ExpiresAt = id, jit.GrantRuleName(policyName, id), expires
	ctx = tflog.SetField(ctx, "grant_id", id)

	var opened []string
	for _, nsgID := range nsgIDs {
		if err := r.openOn(ctx, policy, nsgID, id, spec, expires); err != nil {
			_ = r.closeOn(ctx, opened, event.RuleName) // best effort; the error being reported is the open's
			resp.Diagnostics.AddError("Unable to Open Access Grant", err.Error()+
				"\n\nNo rule of this grant is left open: the ones written by this apply were deleted again.")
			_ = r.emit(ctx, event, audit.ActionOpen, audit.ResultFailure, err.Error())
			return
		}
		opened = append(opened, nsgID)
	}
	if err := r.emit(ctx, event, audit.ActionOpen, audit.ResultSuccess, ""); err != nil {
		_ = r.closeOn(ctx, opened, event.RuleName)
		resp.Diagnostics.AddError("Unable to Write Audit Event",
			"The grant's rules were written but its audit event could not be, so they were deleted again: "+
				"access is never opened without an audit trail.\n\nOriginal Error: "+err.Error())
		return
	}

	plan.ID = types.StringValue(plan.PolicyID.ValueString() + grantIDSep + id)
	plan.GrantID = types.StringValue(id)
	plan.StartsAt = types.StringValue(start.Format(time.RFC3339))
	plan.ExpiresAt = types.StringValue(expires.Format(time.RFC3339))
	plan.Status = types.StringValue(grantActive)
	plan.Open = types.BoolValue(true)
	plan.RuleName = types.StringValue(event.RuleName)
	plan.NSGIDs = stringSet(nsgIDs)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// openOn writes the grant's allow rule on one NSG at the lowest free
// priority of the policy's grant range, chosen against the NSG as it is at
// the moment of the write: grants applied at the same time are written
// together in one NSG write, and a write that raced another process's (a
// stale ETag) is read and chosen again, so two grants never take the same
// priority.
func (r *grantResource) openOn(ctx context.Context, policy jit.Policy, nsgID, id string, spec jit.GrantSpec, expires time.Time) error {
	var full string
	choose := func(current []jit.SecurityRule) (jit.SecurityRule, error) {
		priority, ok := policy.FreeGrantPriority(current, nil)
		if !ok {
			full = fullBandDetail(policy, nsgID, current)
			return jit.SecurityRule{}, errors.New(full)
		}
		return policy.GrantRule(id, spec, expires, priority), nil
	}
	written, err := r.data.rules.ApplyRuleChanges(ctx, nsgID, []azure.RuleChange{{Choose: choose}})
	switch {
	case full != "" && err != nil:
		return errors.New(full)
	case err != nil:
		return errors.New(azureErrorDetail("write the grant's rule on", nsgID, err))
	}
	if len(written) == 1 {
		tflog.Debug(ctx, "Opened grant rule", map[string]any{"nsg_id": nsgID, "rule": written[0].Name, "priority": written[0].Priority})
	}
	return nil
}

func fullBandDetail(policy jit.Policy, nsgID string, rules []jit.SecurityRule) string {
	lo, hi := policy.Band.GrantRange()
	var b strings.Builder
	fmt.Fprintf(&b, "The grant range %d–%d of policy %q (band %s) on %s is full: every priority is taken.", lo, hi, policy.Name, policy.Band, nsgID)
	if grants := jit.ReadNSG(rules).Grants; len(grants) > 0 {
		b.WriteString(" Grants holding it:\n")
		for _, g := range grants {
			if g.Policy == policy.Name {
				fmt.Fprintf(&b, "  - %s by %s, until %s\n", g.ID, g.Requester, g.ExpiresAt.UTC().Format(time.RFC3339))
			}
		}
	}
	b.WriteString("\nWait for grants to expire, or widen the policy's priority_band.")
	return b.String()
}

// closeOn deletes the grant's rule from the NSGs (a missing rule or NSG is
// already closed). It returns the first error, having tried them all.
func (r *grantResource) closeOn(ctx context.Context, nsgIDs []string, ruleName string) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, nsgID := range nsgIDs {
		_, err := r.data.rules.ApplyRuleChanges(ctx, nsgID, []azure.RuleChange{{Delete: ruleName}})
		if err != nil && !errors.Is(err, azure.ErrNotFound) {
			errs = append(errs, errors.New(azureErrorDetail("delete rule "+ruleName+" from", nsgID, err)))
		}
	}
	return errors.Join(errs...)
}

func (r *grantResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state grantModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Read(ctx, 5*time.Minute)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	policyName, nsgIDs, err := parsePolicyID(state.PolicyID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid Policy ID in State", err.Error())
		return
	}
	ruleName := jit.GrantRuleName(policyName, state.GrantID.ValueString())
	var found *jit.GrantRule
	present, missing := 0, 0
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if err != nil && !errors.Is(err, azure.ErrNotFound) {
			resp.Diagnostics.AddError("Unable to Read Access Grant", azureErrorDetail("read the rules of", nsgID, err))
			return
		}
		if g := findGrantRule(view, ruleName); g != nil {
			present++
			if found == nil {
				found = g
			}
		} else {
			missing++
		}
	}

	if state.ExpiresAt.IsNull() {
		// After an import: the request is read back from the rule.
		if found == nil {
			resp.Diagnostics.AddError("Access Grant Not Found",
				fmt.Sprintf("No rule %s was found on %s.", ruleName, strings.Join(nsgIDs, ", ")))
			return
		}
		setGrantFromRule(&state, *found)
	}
	expires, err := time.Parse(time.RFC3339, state.ExpiresAt.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid Expiry in State", err.Error())
		return
	}
	now := r.data.clock.Now()
	status := grantActive
	switch {
	case !now.Before(expires):
		status = grantExpired
	case missing > 0:
		status = grantRevoked
	}
	previous := state.Status.ValueString()
	state.Status = types.StringValue(status)
	state.Open = types.BoolValue(present > 0)
	state.RuleName = types.StringValue(ruleName)
	state.NSGIDs = stringSet(nsgIDs)
	if status != grantActive && previous == grantActive {
		reason := fmt.Sprintf("%s; %d of %d rules still open", status, present, len(nsgIDs))
		_ = r.emit(ctx, grantEvent(ctx, state), audit.ActionDrift, audit.ResultSuccess, reason)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// Update only ever closes: every request attribute replaces the grant, so
// the one change an update carries out is open → closed for an expired or
// revoked grant whose rule is still there. Other updates fill in what an
// import could not read back from the NSG.
func (r *grantResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state grantModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Update(ctx, 20*time.Minute)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if state.Open.ValueBool() && !plan.Open.ValueBool() {
		nsgIDs := setStrings(ctx, state.NSGIDs, &resp.Diagnostics)
		event := grantEvent(ctx, state)
		if err := r.closeOn(ctx, nsgIDs, state.RuleName.ValueString()); err != nil {
			resp.Diagnostics.AddError("Unable to Close Access Grant", err.Error())
			_ = r.emit(ctx, event, audit.ActionClose, audit.ResultFailure, err.Error())
			return
		}
		_ = r.emit(ctx, event, audit.ActionClose, audit.ResultSuccess, state.Status.ValueString())
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *grantResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state grantModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, 20*time.Minute)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	nsgIDs := setStrings(ctx, state.NSGIDs, &resp.Diagnostics)
	event := grantEvent(ctx, state)
	if err := r.closeOn(ctx, nsgIDs, state.RuleName.ValueString()); err != nil {
		resp.Diagnostics.AddError("Unable to Close Access Grant", err.Error())
		_ = r.emit(ctx, event, audit.ActionClose, audit.ResultFailure, err.Error())
		return
	}
	_ = r.emit(ctx, event, audit.ActionClose, audit.ResultSuccess, "destroyed")
}

// ImportState takes "<policy_id>#<grant_id>"; the rest is read back from the
// grant's rule. Duration, justification and approval reference are not on
// the NSG: the configuration fills them in without replacing the grant.
func (r *grantResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	i := strings.LastIndex(req.ID, grantIDSep)
	if i < 0 || !jit.ValidGrantID(req.ID[i+1:]) {
		resp.Diagnostics.AddError("Invalid Import ID", fmt.Sprintf("%q is not <policy_id>#<grant_id>", req.ID))
		return
	}
	policyID, grantID := req.ID[:i], req.ID[i+1:]
	if _, _, err := parsePolicyID(policyID); err != nil {
		resp.Diagnostics.AddError("Invalid Import ID", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("policy_id"), policyID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("grant_id"), grantID)...)
}

// readPolicy reads the policy from every NSG of its id. It must be intact
// and identical on all of them: a grant is never judged against a policy
// that is missing or malformed somewhere (fail closed).
func (r *grantResource) readPolicy(ctx context.Context, name string, nsgIDs []string) (jit.Policy, diag.Diagnostics) {
	var diags diag.Diagnostics
	var policy *jit.Policy
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if err != nil {
			diags.AddAttributeError(path.Root("policy_id"), "Unable to Read JIT Policy", azureErrorDetail("read the rules of", nsgID, err))
			return jit.Policy{}, diags
		}
		decoded, ok := view.Policies[name]
		switch {
		case !ok:
			diags.AddAttributeError(path.Root("policy_id"), "JIT Policy Not Found",
				fmt.Sprintf("Policy %q is not on %s: no grant can be opened there. Apply the policy first.", name, nsgID))
			return jit.Policy{}, diags
		case decoded.Problem != "":
			diags.AddAttributeError(path.Root("policy_id"), "JIT Policy Is Malformed",
				fmt.Sprintf("Policy %q on %s does not read back consistently (%s). Grants are refused until the policy is "+
					"applied again.", name, nsgID, decoded.Problem))
			return jit.Policy{}, diags
		case policy != nil && !policy.Equal(decoded.Policy):
			diags.AddAttributeError(path.Root("policy_id"), "JIT Policy Differs Between NSGs",
				fmt.Sprintf("Policy %q on %s differs from the same policy on %s. Apply the policy again.", name, nsgID, nsgIDs[0]))
			return jit.Policy{}, diags
		}
		if policy == nil {
			p := decoded.Policy
			policy = &p
		}
	}
	return *policy, diags
}

// findGrantRule returns the grant read back from the rule named name, or
// nil when there is none. A rule with that name that no longer decodes as a
// grant still counts as open: it is still letting someone in.
func findGrantRule(view jit.NSGView, name string) *jit.GrantRule {
	for _, g := range view.Grants {
		if strings.EqualFold(g.Rule.Name, name) {
			return &g
		}
	}
	for _, f := range view.Malformed {
		if strings.EqualFold(f.Rule.Name, name) {
			return &jit.GrantRule{Rule: f.Rule}
		}
	}
	return nil
}

// setGrantFromRule fills an imported grant's request from its rule.
func setGrantFromRule(m *grantModel, g jit.GrantRule) {
	var ports []attr.Value
	for _, p := range g.Rule.DestinationPorts {
		var n int64
		if _, err := fmt.Sscanf(p, "%d", &n); err == nil {
			ports = append(ports, types.Int64Value(n))
		}
	}
	m.Ports = types.ListValueMust(types.Int64Type, nonNilValues(ports))
	m.Protocol = types.StringValue(string(g.Rule.Protocol))
	if len(g.Rule.SourcePrefixes) == 1 {
		m.Source = types.StringValue(strings.TrimSuffix(strings.TrimSuffix(g.Rule.SourcePrefixes[0], "/32"), "/128"))
	}
	m.Requester = types.StringValue(g.Requester)
	m.ExpiresAt = types.StringValue(g.ExpiresAt.UTC().Format(time.RFC3339))
	m.StartsAt = types.StringNull()
}

// grantInput reads the request; known is false while any part is unknown.
func grantInput(ctx context.Context, m grantModel, diags *diag.Diagnostics) (jit.GrantInput, bool) {
	if hasUnknownElement(m.Ports) || m.Protocol.IsUnknown() || m.Source.IsUnknown() || m.Duration.IsUnknown() ||
		m.Requester.IsUnknown() {
		return jit.GrantInput{}, false
	}
	in := jit.GrantInput{Protocol: m.Protocol.ValueString(), Source: m.Source.ValueString(),
		Duration: m.Duration.ValueString(), Requester: m.Requester.ValueString()}
	diags.Append(m.Ports.ElementsAs(ctx, &in.Ports, false)...)
	return in, true
}

// requestEvent is the audit record of a request, before it has a grant id.
func requestEvent(ctx context.Context, m grantModel, policyName string, nsgIDs []string) audit.Event {
	m.GrantID, m.RuleName, m.ExpiresAt = types.StringNull(), types.StringNull(), types.StringNull()
	e := grantEvent(ctx, m)
	e.Policy, e.NSGIDs = policyName, nsgIDs
	return e
}

func grantEvent(ctx context.Context, m grantModel) audit.Event {
	policyName, nsgIDs, _ := parsePolicyID(m.PolicyID.ValueString())
	e := audit.Event{Actor: actor, GrantID: m.GrantID.ValueString(), Policy: policyName, NSGIDs: nsgIDs,
		RuleName: m.RuleName.ValueString(), Source: m.Source.ValueString(), Requester: m.Requester.ValueString(),
		Justification: m.Justification.ValueString(), ApprovalReference: m.ApprovalReference.ValueString()}
	var ports []int64
	_ = m.Ports.ElementsAs(ctx, &ports, false)
	for _, p := range ports {
		e.Ports = append(e.Ports, fmt.Sprintf("%d/%s", p, m.Protocol.ValueString()))
	}
	if t, err := time.Parse(time.RFC3339, m.ExpiresAt.ValueString()); err == nil {
		e.ExpiresAt = t
	}
	return e
}

// emit records an audit event in the configured sink and Terraform's log.
func (r *grantResource) emit(ctx context.Context, e audit.Event, action audit.Action, result audit.Result, reason string) error {
	e.Time = r.data.clock.Now()
	e.Action, e.Result, e.Reason = action, result, reason
	tflog.Info(ctx, "Audit: access grant "+string(action), map[string]any{
		"grant_id": e.GrantID, "policy": e.Policy, "result": string(result), "reason": reason,
		"source": e.Source, "requester": e.Requester, "ports": e.Ports,
	})
	if err := r.data.audit.Emit(ctx, e); err != nil {
		tflog.Error(ctx, "Unable to write audit event", map[string]any{"error": err.Error()})
		return err
	}
	return nil
}

func diagSummary(diags diag.Diagnostics) string {
	var parts []string
	for _, d := range diags.Errors() {
		parts = append(parts, d.Summary()+": "+d.Detail())
	}
	return strings.Join(parts, "; ")
}

// replaceUnlessImported replaces the grant when the attribute changes, except
// when the state has no value yet (right after an import, the NSG cannot
// tell the duration or the justification): filling it in must not re-open.
func replaceUnlessImported() planmodifier.String {
	return stringplanmodifier.RequiresReplaceIf(func(_ context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
		resp.RequiresReplace = !req.StateValue.IsNull()
	}, "Changing this replaces the grant (a new request), except when filling it in after an import.",
		"Changing this replaces the grant (a new request), except when filling it in after an import.")
}
