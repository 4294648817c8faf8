package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// Grant statuses, as the domain's state machine names them.
const (
	grantActive  = string(jit.GrantActive)
	grantExpired = string(jit.GrantExpired)
	grantRevoked = string(jit.GrantRevoked)
	grantClosed  = string(jit.GrantClosed)
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
	Recorded          types.Bool     `tfsdk:"recorded"`
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
			"expired and asks for the block to be removed.\n\n" +
			"A grant is identified by its request: `grant_id` is derived from every request attribute, so the same request " +
			"applied again (after state was lost, by `-replace`, or from an import) is recognised — adopted while it is open, " +
			"never opened again once it has ended, never given a second window. Expired, revoked and closed grants stay ended; " +
			"changes to the policy (NSGs added or removed, a rename) update the grant in place and never re-open it. To ask " +
			"again, open a new request: change the justification or the approval reference.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "`<policy_id>#<grant_id>`.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"grant_id": schema.StringAttribute{
				Computed: true,
				MarkdownDescription: "10 lowercase letters and digits derived from the request (policy name, ports, protocol, source, " +
					"duration, requester, justification and approval reference), in the rule's name and description. Known at plan " +
					"time when the policy is.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"policy_id": schema.StringAttribute{
				Required: true,
				MarkdownDescription: "The `id` of the `jit_policy` (`<name>@<nsg id>[,...]`); the policy itself is read from the NSGs. " +
					"A change (the policy gained or lost an NSG, or was renamed) updates the grant in place: the policy moves an " +
					"active grant's rules for its remaining window, and an ended grant stays ended.",
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
				Computed: true,
				MarkdownDescription: "`active`; `expired` once `expires_at` has passed; `revoked` when a rule was deleted before expiry; " +
					"`closed` when the same request was closed before (destroyed, or closed by `jitd`). Expired, revoked and closed " +
					"are final.",
			},
			"open": schema.BoolAttribute{
				Computed:            true,
				MarkdownDescription: "Whether any of the grant's rules is still on an NSG.",
			},
			"recorded": schema.BoolAttribute{
				Computed: true,
				MarkdownDescription: "Whether every NSG of the policy holds the record of this grant's end, so that the " +
					"same request is never opened again, even after its state is lost. `false` while the grant is active. " +
					"An ended grant without its records (its rule was deleted outside Terraform before `jitd` saw it) plans an " +
					"update that writes them.",
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

// ModifyPlan checks a new request against the policy on its NSGs and tells
// what applying it will do (open, take over the same request still open, or
// nothing because it has ended); for an existing grant it follows the
// policy's NSGs and turns expiry and revocation into what the user should
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
		r.planCreate(ctx, plan, resp)
		return
	}

	var state grantModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// Nothing but a close ever changes a grant's status in an apply, and
	// its identity never changes in place.
	plan.Status, plan.Open, plan.Recorded = state.Status, state.Open, state.Recorded
	plan.ID, plan.GrantID, plan.RuleName = state.ID, state.GrantID, state.RuleName
	plan.StartsAt, plan.ExpiresAt = state.StartsAt, state.ExpiresAt
	// The grant follows its policy's NSGs; the policy moves the rules.
	switch {
	case plan.PolicyID.Equal(state.PolicyID):
		plan.NSGIDs = state.NSGIDs
	case plan.PolicyID.IsUnknown():
		plan.NSGIDs = types.SetUnknown(types.StringType)
		plan.ID = types.StringUnknown()
	default:
		_, nsgIDs, err := parsePolicyID(plan.PolicyID.ValueString())
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("policy_id"), "Invalid Policy ID", err.Error())
			return
		}
		plan.NSGIDs = stringSet(nsgIDs)
		plan.ID = types.StringValue(plan.PolicyID.ValueString() + grantIDSep + state.GrantID.ValueString())
	}

	status := jit.GrantState(state.Status.ValueString())
	if status.Terminal() {
		expires := state.ExpiresAt.ValueString()
		what := fmt.Sprintf("expired at %s", expires)
		switch status {
		case jit.GrantRevoked:
			what = fmt.Sprintf("was revoked before its expiry (%s): its rule was deleted outside Terraform", expires)
		case jit.GrantClosed:
			what = fmt.Sprintf("was closed before its expiry (%s): this exact request was destroyed or closed before, "+
				"or jitd closed it just ahead of its expiry (it starts a close by the time its NSG writes take, at most %s, "+
				"so that the rule is gone by then)", expires, jit.MaxCloseLead)
		}
		detail := fmt.Sprintf("Access grant %s for %s %s. Remove this block; to ask again, open a new request.\n\n"+
			"This grant will not open again: nothing in a plan re-opens an expired, revoked or closed grant.",
			state.GrantID.ValueString(), state.Source.ValueString(), what)
		if state.Open.ValueBool() {
			// A rule is still there (no jitd ran, or part of it was revoked):
			// this plan closes it.
			plan.Open = types.BoolValue(false)
			detail += "\n\nA rule of this grant is still open on Azure; this apply deletes it."
		}
		if !state.Recorded.ValueBool() {
			// Its end is not recorded on every NSG (a rule deleted outside
			// Terraform before jitd saw it): without the record, the same
			// request applied again after lost state would open anew.
			plan.Recorded = types.BoolValue(true)
			detail += "\n\nThe NSGs do not all record that this grant ended; this apply writes the records."
		}
		resp.Diagnostics.AddWarning(fmt.Sprintf("Access Grant %s", strings.ToUpper(string(status[:1]))+string(status[1:])), detail)
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// planCreate checks a new request. What the apply will do depends on the
// NSGs at that moment, so status, open and the window stay unknown; the
// grant id is known as soon as the request and its policy are.
func (r *grantResource) planCreate(ctx context.Context, plan grantModel, resp *resource.ModifyPlanResponse) {
	if plan.PolicyID.IsUnknown() {
		return
	}
	policyName, nsgIDs, err := parsePolicyID(plan.PolicyID.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("policy_id"), "Invalid Policy ID", err.Error())
		return
	}
	plan.NSGIDs = stringSet(nsgIDs)
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
	in, known := grantInput(ctx, plan, &resp.Diagnostics)
	if !known || resp.Diagnostics.HasError() {
		return
	}
	policy, diags := r.readPolicy(ctx, policyName, nsgIDs, true)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	spec, err := policy.CheckGrant(in)
	if err != nil {
		addFieldErrors(&resp.Diagnostics, "Access Request Outside the Policy", err)
		// A refused request is audited whenever it is refused: in a pull
		// request's plan as much as at apply.
		_ = r.emit(ctx, requestEvent(ctx, plan, policyName, nsgIDs), audit.ActionRefuse, audit.ResultDenied, err.Error())
		return
	}
	if plan.Justification.IsUnknown() || plan.ApprovalReference.IsUnknown() {
		return
	}
	id := grantRequest(plan, policyName, spec).ID()
	plan.GrantID = types.StringValue(id)
	plan.RuleName = types.StringValue(jit.GrantRuleName(policyName, id))
	plan.ID = types.StringValue(plan.PolicyID.ValueString() + grantIDSep + id)
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)

	sightings, err := r.sight(ctx, policyName, id, nsgIDs)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("policy_id"), "Unable to Read Access Grant", err.Error())
		return
	}
	switch d := jit.DecideOpen(id, spec.Duration, sightings, r.data.clock.Now()); d.Action {
	case jit.OpenAdopt:
		resp.Diagnostics.AddWarning("Access Grant Already Open",
			"Applying opens nothing new: "+d.Reason+". The window is not extended.")
	case jit.OpenRefuse:
		resp.Diagnostics.AddWarning("Access Request Already Used",
			"Applying opens nothing: "+d.Reason+". The grant is recorded as ended. Remove this block; to ask again, "+
				"open a new request (another justification or approval reference).")
	}
}

func (r *grantResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	// Every ARM write made for this grant is named in its audit events.
	ctx, _ = azure.WithWriteRecorder(ctx)
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
	policy, diags := r.readPolicy(ctx, policyName, nsgIDs, false)
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

	id := grantRequest(plan, policyName, spec).ID()
	now := r.data.clock.Now()
	event.GrantID, event.RuleName = id, jit.GrantRuleName(policyName, id)
	ctx = tflog.SetField(ctx, "grant_id", id)
	plan.ID = types.StringValue(plan.PolicyID.ValueString() + grantIDSep + id)
	plan.GrantID = types.StringValue(id)
	plan.RuleName = types.StringValue(event.RuleName)
	plan.NSGIDs = stringSet(nsgIDs)

	sightings, err := r.sight(ctx, policyName, id, nsgIDs)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Open Access Grant", err.Error())
		return
	}
	decision := jit.DecideOpen(id, spec.Duration, sightings, now)
	event.ExpiresAt = decision.ExpiresAt
	plan.Recorded = types.BoolValue(false)
	plan.ExpiresAt = types.StringValue(decision.ExpiresAt.UTC().Format(time.RFC3339))
	plan.StartsAt = types.StringNull()
	switch decision.Action {
	case jit.OpenRefuse:
		// The same request has ended: it is kept in state as ended, so the
		// next plan asks for the block to be removed, and nothing opens.
		status := jit.GrantClosed
		if !decision.ExpiresAt.IsZero() && !now.Before(decision.ExpiresAt) {
			status = jit.GrantExpired
		}
		plan.Status = types.StringValue(string(status))
		plan.Open = types.BoolValue(anyOpen(sightings))
		if decision.CloseRemains {
			status = jit.GrantRevoked
			plan.Status = types.StringValue(string(status))
			event.RuleName = jit.GrantRuleName(policyName, id)
			g := jit.GrantRule{Policy: policyName, ID: id, Requester: spec.Requester, ExpiresAt: decision.ExpiresAt,
				Rule: policy.GrantRule(id, spec, decision.ExpiresAt, 0)}
			if err := r.endOn(ctx, nsgIDs, g); err != nil {
				resp.Diagnostics.AddError("Unable to Close Access Grant", err.Error())
			} else {
				plan.Open = types.BoolValue(false)
				_ = r.emit(ctx, event, audit.ActionClose, audit.ResultSuccess, decision.Reason)
			}
		}
		if decision.ExpiresAt.IsZero() {
			// No window to tell (a rule of this name that does not decode):
			// it ends now.
			status = jit.GrantExpired
			plan.ExpiresAt = types.StringValue(now.UTC().Format(time.RFC3339))
			plan.Status = types.StringValue(string(status))
		}
		plan.Recorded = types.BoolValue(r.endRecorded(ctx, nsgIDs, jit.GrantRule{Policy: policyName, ID: id}))
		resp.Diagnostics.AddWarning("Access Request Already Used", "Nothing was opened: "+decision.Reason+
			". Remove this block; to ask again, open a new request (another justification or approval reference).")
		_ = r.emit(ctx, event, audit.ActionRefuse, audit.ResultDenied, decision.Reason)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	case jit.OpenAdopt:
		plan.Status = types.StringValue(grantActive)
		plan.Open = types.BoolValue(true)
		resp.Diagnostics.AddWarning("Access Grant Already Open", "Nothing was written: "+decision.Reason+". The window is not extended.")
		_ = r.emit(ctx, event, audit.ActionAdopt, audit.ResultSuccess, decision.Reason)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}

	start := now.UTC().Truncate(time.Second)
	expires := start.Add(spec.Duration)
	event.ExpiresAt = expires
	plan.StartsAt = types.StringValue(start.Format(time.RFC3339))
	plan.ExpiresAt = types.StringValue(expires.Format(time.RFC3339))
	plan.Status = types.StringValue(grantActive)
	plan.Open = types.BoolValue(true)

	opened, err := r.openOnAll(ctx, policy, nsgIDs, id, spec, expires)
	if err == nil {
		err = r.emit(ctx, event, audit.ActionOpen, audit.ResultSuccess, "")
		if err != nil {
			err = fmt.Errorf("the grant's rules were written but its audit event could not be, and access is never "+
				"opened without an audit trail: %w", err)
		}
	}
	if err == nil {
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}

	// The create failed or ran out of time. Every NSG the change may have
	// reached is closed again, whether or not its write was reported: a
	// timed-out write may still have landed. What could not be closed is
	// kept in state (the resource is then tainted), so that destroy or the
	// next apply closes it: nothing is left open that state does not know.
	leftOpen := r.undoOpen(ctx, nsgIDs, event.RuleName)
	detail := err.Error()
	if len(leftOpen) == 0 {
		detail += "\n\nNo rule of this grant is left open: every NSG it may have reached was checked and closed again."
		if len(opened) > 0 {
			detail += fmt.Sprintf(" (It had been written on %s.)", strings.Join(opened, ", "))
		}
		_ = r.emit(ctx, event, audit.ActionOpen, audit.ResultFailure, err.Error()+"; nothing left open")
		// Its rule may have been open for a moment: the close is audited
		// as any other.
		_ = r.emit(ctx, event, audit.ActionClose, audit.ResultSuccess,
			"the create failed: the grant's rule was deleted again from every NSG it may have reached")
	} else {
		detail += fmt.Sprintf("\n\nThe grant's rule could not be closed again on %s: it stays open until %s. It is kept in "+
			"Terraform's state, so `terraform destroy` or the next apply closes it; jitd closes it at expiry.",
			strings.Join(leftOpen, ", "), expires.Format(time.RFC3339))
		// Access is open: the audit trail says so as it says of any open
		// (a failure would read as "nothing opened"), with why it is partial.
		_ = r.emit(ctx, event, audit.ActionOpen, audit.ResultSuccess, "the create failed ("+err.Error()+
			") and the grant's rule could not be closed again: it is open on "+strings.Join(leftOpen, ", ")+" until it expires or is destroyed")
		plan.NSGIDs = stringSet(nsgIDs)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
	resp.Diagnostics.AddError("Unable to Open Access Grant", detail)
}

// grantRequest is the request as the domain identifies it.
func grantRequest(m grantModel, policyName string, spec jit.GrantSpec) jit.GrantRequest {
	return jit.GrantRequest{Policy: policyName, Spec: spec, Justification: m.Justification.ValueString(),
		ApprovalReference: m.ApprovalReference.ValueString()}
}

// sight reads what each NSG says about the grant, from this run's cached
// reads. A missing NSG holds no rule.
func (r *grantResource) sight(ctx context.Context, policyName, id string, nsgIDs []string) ([]jit.GrantSighting, error) {
	out := make([]jit.GrantSighting, 0, len(nsgIDs))
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if err != nil && !errors.Is(err, azure.ErrNotFound) {
			return nil, errors.New(azureErrorDetail("read the rules of", nsgID, err))
		}
		out = append(out, jit.SightGrant(nsgID, view, policyName, id))
	}
	return out, nil
}

func anyOpen(sightings []jit.GrantSighting) bool {
	for _, s := range sightings {
		if s.Open {
			return true
		}
	}
	return false
}

// openOnAll writes the grant's rule on every NSG, and returns the NSGs
// where it was written, up to the first failure.
func (r *grantResource) openOnAll(ctx context.Context, policy jit.Policy, nsgIDs []string, id string, spec jit.GrantSpec, expires time.Time) ([]string, error) {
	var opened []string
	for _, nsgID := range nsgIDs {
		if err := r.openOn(ctx, policy, nsgID, id, spec, expires); err != nil {
			return opened, err
		}
		opened = append(opened, nsgID)
	}
	return opened, nil
}

// undoOpen deletes the grant's rule from every NSG it may have reached, with
// a context of its own (the apply's may have ended), and returns the NSGs
// where it may still be open.
func (r *grantResource) undoOpen(ctx context.Context, nsgIDs []string, ruleName string) []string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	var left []string
	for _, nsgID := range nsgIDs {
		delay := undoRetryDelay
		for attempt := 1; ; attempt++ {
			_, err := r.data.rules.ApplyRuleChanges(ctx, nsgID, []azure.RuleChange{{Delete: ruleName}})
			if err == nil || errors.Is(err, azure.ErrNotFound) {
				break
			}
			// A close is worth retrying whenever it may succeed: a failed
			// long-running operation, throttling or an outage ends, while
			// a missing permission or an invalid request does not.
			final := errors.Is(err, azure.ErrForbidden) || errors.Is(err, azure.ErrUnauthorized) || errors.Is(err, azure.ErrInvalid)
			fields := map[string]any{"nsg_id": nsgID, "rule": ruleName, "attempt": attempt, "error": err.Error()}
			if final || !sleepCtx(ctx, delay) {
				tflog.Error(ctx, "Could not close a grant rule after a failed create", fields)
				left = append(left, nsgID)
				break
			}
			tflog.Warn(ctx, "Retrying the close of a grant rule after a failed create", fields)
			delay = min(2*delay, undoRetryMaxDelay)
		}
	}
	return left
}

// undoTimeout bounds the clean-up after a failed or timed-out create; within
// it, a close that failed for a reason that can pass is retried, waiting
// undoRetryDelay, then twice as long each time, up to undoRetryMaxDelay.
const undoTimeout = 5 * time.Minute

var undoRetryDelay, undoRetryMaxDelay = time.Second, 30 * time.Second

// sleepCtx waits d, or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
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

// endOn ends the grant on the NSGs: its rule is deleted and, where its
// policy is, a record of it is kept (jit.EndGrant), in one write per NSG. A
// missing NSG has nothing to close. It returns every error, having tried
// every NSG: a close is finished even when the apply is cancelled.
func (r *grantResource) endOn(ctx context.Context, nsgIDs []string, g jit.GrantRule) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, nsgID := range nsgIDs {
		if err := endGrantOn(ctx, r.data.rules, nsgID, g); err != nil {
			errs = append(errs, errors.New(azureErrorDetail("close grant "+g.ID+" on", nsgID, err)))
		}
	}
	return errors.Join(errs...)
}

// endRecorded reports whether every NSG of the grant's policy that holds
// the policy also holds the record of the grant's end (jit.EndGrant would
// write none). An NSG that cannot be read counts as recorded: the next
// read tells.
func (r *grantResource) endRecorded(ctx context.Context, nsgIDs []string, g jit.GrantRule) bool {
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if err != nil {
			continue
		}
		if jit.EndGrant(view, g).Record {
			return false
		}
	}
	return true
}

// endGrantOn ends grant g on one NSG (see jit.EndGrant): the policy
// resource uses it too when an NSG leaves a policy.
func endGrantOn(ctx context.Context, store *cachedRules, nsgID string, g jit.GrantRule) error {
	view, err := store.View(ctx, nsgID)
	if errors.Is(err, azure.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	end := jit.EndGrant(view, g)
	if end.Empty() {
		return nil
	}
	changes := make([]azure.RuleChange, 0, len(end.Delete)+1)
	for _, name := range end.Delete {
		changes = append(changes, azure.RuleChange{Delete: name})
	}
	if end.Record {
		changes = append(changes, azure.RuleChange{Choose: func(current []jit.SecurityRule) (jit.SecurityRule, error) {
			rec, ok := jit.EndedRule(g, current)
			if !ok {
				return jit.SecurityRule{}, errors.New("no outbound priority is free for the record of the ended grant")
			}
			return rec, nil
		}})
	}
	_, err = store.ApplyRuleChanges(ctx, nsgID, changes)
	if errors.Is(err, azure.ErrNotFound) {
		return nil
	}
	return err
}

// stateGrant is the grant as the state describes it, for ending it.
func stateGrant(ctx context.Context, m grantModel) jit.GrantRule {
	policyName, _, _ := parsePolicyID(m.PolicyID.ValueString())
	if n := m.RuleName.ValueString(); n != "" {
		// The rule keeps the name it was written with, under a policy since
		// renamed too.
		policyName = strings.TrimSuffix(strings.TrimPrefix(n, jit.RuleNamePrefix), "-g-"+m.GrantID.ValueString())
	}
	g := jit.GrantRule{Policy: policyName, ID: m.GrantID.ValueString(), Requester: m.Requester.ValueString()}
	g.ExpiresAt, _ = time.Parse(time.RFC3339, m.ExpiresAt.ValueString())
	g.Rule.Protocol = jit.Protocol(m.Protocol.ValueString())
	g.Rule.SourcePrefixes = []string{m.Source.ValueString()}
	var ports []int64
	_ = m.Ports.ElementsAs(ctx, &ports, false)
	for _, p := range ports {
		g.Rule.DestinationPorts = append(g.Rule.DestinationPorts, fmt.Sprint(p))
	}
	return g
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

	_, nsgIDs, err := parsePolicyID(state.PolicyID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid Policy ID in State", err.Error())
		return
	}
	g := stateGrant(ctx, state)
	sightings, err := r.sight(ctx, g.Policy, g.ID, nsgIDs)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Read Access Grant", err.Error())
		return
	}

	previous := jit.GrantState(state.Status.ValueString())
	if state.ExpiresAt.IsNull() {
		// After an import: the request is read back from the rule, or from
		// the record it left when it ended.
		previous = jit.GrantActive
		if !setGrantFromSightings(&state, sightings) {
			if why := jit.Tampered(sightings, jit.SecurityRule{}); why != "" {
				resp.Diagnostics.AddError("Access Grant Tampered",
					fmt.Sprintf("Rule %s cannot be imported: it is not as its grant wrote it, %s. jitd closes it.",
						jit.GrantRuleName(g.Policy, g.ID), why))
				return
			}
			resp.Diagnostics.AddError("Access Grant Not Found",
				fmt.Sprintf("Neither rule %s nor a record of it was found on %s.", jit.GrantRuleName(g.Policy, g.ID),
					strings.Join(nsgIDs, ", ")))
			return
		}
		g = stateGrant(ctx, state)
	}
	if previous == "" {
		previous = jit.GrantActive
	}
	expires, err := time.Parse(time.RFC3339, state.ExpiresAt.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid Expiry in State", err.Error())
		return
	}
	status := previous.Observe(expires, sightings, r.data.clock.Now())
	tampered := jit.Tampered(sightings, g.Rule)
	if tampered != "" && !status.Terminal() {
		// Edited in place: not the grant that was reviewed. Revoked, and
		// the plan closes the rule.
		status = jit.GrantRevoked
	}
	state.Status = types.StringValue(string(status))
	state.Open = types.BoolValue(anyOpen(sightings))
	state.Recorded = types.BoolValue(status.Terminal() && r.endRecorded(ctx, nsgIDs, g))
	state.RuleName = types.StringValue(jit.GrantRuleName(g.Policy, g.ID))
	state.NSGIDs = stringSet(nsgIDs)
	if status.Terminal() && !previous.Terminal() {
		present := 0
		for _, s := range sightings {
			if s.Open {
				present++
			}
		}
		reason := fmt.Sprintf("%s; %d of %d rules still open", status, present, len(nsgIDs))
		if tampered != "" {
			reason += "; tampered: " + tampered
		}
		_ = r.emit(ctx, grantEvent(ctx, state), audit.ActionDrift, audit.ResultSuccess, reason)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// Update never opens. The one change it carries out on Azure is open →
// closed for an ended grant whose rule is still there; otherwise it records
// what the plan says: the policy's new NSGs (the policy moved the rules), or
// what an import could not read back from the NSG.
func (r *grantResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	// Every ARM write made for this grant is named in its audit events.
	ctx, _ = azure.WithWriteRecorder(ctx)
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

	closing := state.Open.ValueBool() && !plan.Open.IsUnknown() && !plan.Open.ValueBool()
	if closing {
		_, nsgIDs, _ := parsePolicyID(state.PolicyID.ValueString())
		event := grantEvent(ctx, state)
		if err := r.endOn(ctx, nsgIDs, stateGrant(ctx, state)); err != nil {
			resp.Diagnostics.AddError("Unable to Close Access Grant", err.Error())
			_ = r.emit(ctx, event, audit.ActionClose, audit.ResultFailure, err.Error())
			return
		}
		_ = r.emit(ctx, event, audit.ActionClose, audit.ResultSuccess, state.Status.ValueString())
	}
	if !closing && !state.Recorded.ValueBool() && plan.Recorded.ValueBool() {
		// An ended grant whose end is not recorded everywhere: the records
		// are written (nothing is open to close).
		_, nsgIDs, _ := parsePolicyID(state.PolicyID.ValueString())
		if err := r.endOn(ctx, nsgIDs, stateGrant(ctx, state)); err != nil {
			resp.Diagnostics.AddError("Unable to Record the End of an Access Grant", err.Error())
			return
		}
	}
	if plan.NSGIDs.IsUnknown() || plan.ID.IsUnknown() {
		_, nsgIDs, err := parsePolicyID(plan.PolicyID.ValueString())
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("policy_id"), "Invalid Policy ID", err.Error())
			return
		}
		plan.NSGIDs = stringSet(nsgIDs)
		plan.ID = types.StringValue(plan.PolicyID.ValueString() + grantIDSep + state.GrantID.ValueString())
	}
	if !plan.PolicyID.Equal(state.PolicyID) {
		tflog.Info(ctx, "Access grant follows its policy", map[string]any{"grant_id": state.GrantID.ValueString(),
			"from": state.PolicyID.ValueString(), "to": plan.PolicyID.ValueString(), "status": state.Status.ValueString()})
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *grantResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	// Every ARM write made for this grant is named in its audit events.
	ctx, _ = azure.WithWriteRecorder(ctx)
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
	if err := r.endOn(ctx, nsgIDs, stateGrant(ctx, state)); err != nil {
		resp.Diagnostics.AddError("Unable to Close Access Grant", err.Error())
		_ = r.emit(ctx, event, audit.ActionClose, audit.ResultFailure, err.Error())
		return
	}
	_ = r.emit(ctx, event, audit.ActionClose, audit.ResultSuccess, "destroyed")
}

// ImportState takes "<policy_id>#<grant_id>"; the rest is read back from the
// grant's rule (or, for a grant that has ended, from its record). Duration,
// justification and approval reference are not on the NSG: the
// configuration fills them in without replacing the grant or touching Azure.
func (r *grantResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	i := strings.LastIndex(req.ID, grantIDSep)
	if i < 0 || !jit.ValidGrantID(req.ID[i+1:]) {
		resp.Diagnostics.AddError("Invalid Import ID", fmt.Sprintf("%q is not <policy_id>#<grant_id>", req.ID))
		return
	}
	policyID, grantID := req.ID[:i], req.ID[i+1:]
	policyName, _, err := parsePolicyID(policyID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Import ID", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("policy_id"), policyID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("grant_id"), grantID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("rule_name"), jit.GrantRuleName(policyName, grantID))...)
}

// readPolicy reads the policy from every NSG of its id. It must be intact
// and identical on all of them: a grant is never judged against a policy
// that is missing or malformed somewhere (fail closed).
//
// At plan time (planning) an NSG without the policy is allowed when another
// NSG of the id holds it: the policy may be gaining that NSG in the same
// run, and the apply checks again once it has.
func (r *grantResource) readPolicy(ctx context.Context, name string, nsgIDs []string, planning bool) (_ jit.Policy, diags diag.Diagnostics) {
	var policy *jit.Policy
	var missing string
	for _, nsgID := range nsgIDs {
		view, err := r.data.rules.View(ctx, nsgID)
		if err != nil && (!planning || !errors.Is(err, azure.ErrNotFound)) {
			diags.AddAttributeError(path.Root("policy_id"), "Unable to Read JIT Policy", azureErrorDetail("read the rules of", nsgID, err))
			return jit.Policy{}, diags
		}
		decoded, ok := view.Policies[name]
		switch {
		case !ok && planning:
			missing = nsgID
			continue
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
	if policy == nil {
		diags.AddAttributeError(path.Root("policy_id"), "JIT Policy Not Found",
			fmt.Sprintf("Policy %q is not on %s: no grant can be opened there. Apply the policy first.", name, missing))
		return jit.Policy{}, diags
	}
	return *policy, diags
}

// setGrantFromSightings fills an imported grant's request from its rule,
// or from its record when it has ended. It reports whether either was found.
func setGrantFromSightings(m *grantModel, sightings []jit.GrantSighting) bool {
	var rule jit.SecurityRule
	var requester string
	var expires time.Time
	switch {
	case slices.ContainsFunc(sightings, func(s jit.GrantSighting) bool { return s.Rule != nil }):
		i := slices.IndexFunc(sightings, func(s jit.GrantSighting) bool { return s.Rule != nil })
		g := sightings[i].Rule
		rule, requester, expires = g.Rule, g.Requester, g.ExpiresAt
	case slices.ContainsFunc(sightings, func(s jit.GrantSighting) bool { return s.Ended != nil }):
		i := slices.IndexFunc(sightings, func(s jit.GrantSighting) bool { return s.Ended != nil })
		e := sightings[i].Ended
		rule, requester, expires = e.Rule, e.Requester, e.ExpiresAt
	default:
		return false
	}
	var ports []attr.Value
	for _, p := range rule.DestinationPorts {
		var n int64
		if _, err := fmt.Sscanf(p, "%d", &n); err == nil {
			ports = append(ports, types.Int64Value(n))
		}
	}
	m.Ports = types.ListValueMust(types.Int64Type, nonNilValues(ports))
	m.Protocol = types.StringValue(string(rule.Protocol))
	if len(rule.SourcePrefixes) == 1 {
		m.Source = types.StringValue(strings.TrimSuffix(strings.TrimSuffix(rule.SourcePrefixes[0], "/32"), "/128"))
	}
	m.Requester = types.StringValue(requester)
	m.ExpiresAt = types.StringValue(expires.UTC().Format(time.RFC3339))
	m.StartsAt = types.StringNull()
	return true
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
	e.Approval, e.ARMWrites = r.data.approval, azure.RecordedWrites(ctx)
	tflog.Info(ctx, "Audit: access grant "+string(action), map[string]any{
		"grant_id": e.GrantID, "policy": e.Policy, "result": string(result), "reason": reason,
		"source": e.Source, "requester": e.Requester, "ports": e.Ports,
		"approved_by": e.ApprovedBy, "change_ref": e.ChangeRef, "commit_sha": e.CommitSHA, "arm_writes": len(e.ARMWrites),
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
