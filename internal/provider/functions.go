package provider

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/function"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/provider/validators"
)

// Provider-defined functions (Terraform 1.8 and later). They are pure: the
// same arguments always give the same result, so they never read Azure or
// the clock. They let a module check a request before a plan ever reaches
// the provider, in a variable's validation or a precondition.

var (
	_ function.Function = cidrContainsFunction{}
	_ function.Function = durationSecondsFunction{}
	_ function.Function = policyIDFunction{}
)

// cidrContainsFunction is provider::jit::cidr_contains(prefixes, address).
type cidrContainsFunction struct{}

func newCIDRContainsFunction() function.Function { return cidrContainsFunction{} }

func (cidrContainsFunction) Metadata(_ context.Context, _ function.MetadataRequest, resp *function.MetadataResponse) {
	resp.Name = "cidr_contains"
}

func (cidrContainsFunction) Definition(_ context.Context, _ function.DefinitionRequest, resp *function.DefinitionResponse) {
	resp.Definition = function.Definition{
		Summary: "Whether an address or CIDR lies wholly inside one of a list of prefixes",
		MarkdownDescription: "Returns `true` when `address` (an IP address or CIDR, IPv4 or IPv6) lies wholly inside one of " +
			"`prefixes`, the test a `jit_access_grant`'s source must pass against its policy's allowed sources. `\"*\"` in " +
			"`prefixes` contains every address. Prefixes with host bits set are refused, as Azure refuses them.",
		Parameters: []function.Parameter{
			function.ListParameter{Name: "prefixes", ElementType: types.StringType, MarkdownDescription: "IP addresses or CIDRs, or `\"*\"`."},
			function.StringParameter{Name: "address", MarkdownDescription: "The IP address or CIDR to look for."},
		},
		Return: function.BoolReturn{},
	}
}

func (cidrContainsFunction) Run(ctx context.Context, req function.RunRequest, resp *function.RunResponse) {
	var prefixes []string
	var address string
	resp.Error = function.ConcatFuncErrors(req.Arguments.Get(ctx, &prefixes, &address))
	if resp.Error != nil {
		return
	}
	addr, err := jit.ParseAddressPrefix(address)
	if err != nil {
		resp.Error = function.NewArgumentFuncError(1, "address "+err.Error())
		return
	}
	contained := false
	for _, s := range prefixes {
		if s == jit.Any {
			contained = true
			continue
		}
		p, err := jit.ParseAddressPrefix(s)
		if err != nil {
			resp.Error = function.NewArgumentFuncError(0, "prefix "+err.Error())
			return
		}
		if p.Addr().Is4() == addr.Addr().Is4() && p.Bits() <= addr.Bits() && p.Contains(addr.Addr()) {
			contained = true
		}
	}
	resp.Error = resp.Result.Set(ctx, contained)
}

// durationSecondsFunction is provider::jit::duration_seconds(duration).
type durationSecondsFunction struct{}

func newDurationSecondsFunction() function.Function { return durationSecondsFunction{} }

func (durationSecondsFunction) Metadata(_ context.Context, _ function.MetadataRequest, resp *function.MetadataResponse) {
	resp.Name = "duration_seconds"
}

func (durationSecondsFunction) Definition(_ context.Context, _ function.DefinitionRequest, resp *function.DefinitionResponse) {
	resp.Definition = function.Definition{
		Summary: "The number of seconds in a duration such as 90m or 2h",
		MarkdownDescription: "Parses a duration the way `jit_access_grant.duration` and `jit_policy`'s `max_duration` do " +
			"(Go syntax: `30m`, `1h30m`, `4h`) and returns its length in seconds, so a module can compare durations: " +
			"`provider::jit::duration_seconds(var.duration) <= provider::jit::duration_seconds(\"4h\")`.",
		Parameters: []function.Parameter{
			function.StringParameter{Name: "duration", MarkdownDescription: "A duration in Go syntax."},
		},
		Return: function.Int64Return{},
	}
}

func (durationSecondsFunction) Run(ctx context.Context, req function.RunRequest, resp *function.RunResponse) {
	var s string
	resp.Error = function.ConcatFuncErrors(req.Arguments.Get(ctx, &s))
	if resp.Error != nil {
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		resp.Error = function.NewArgumentFuncError(0, fmt.Sprintf("duration %q is not a duration such as 30m or 2h", s))
		return
	}
	resp.Error = resp.Result.Set(ctx, int64(d/time.Second))
}

// policyIDFunction is provider::jit::policy_id(name, nsg_ids).
type policyIDFunction struct{}

func newPolicyIDFunction() function.Function { return policyIDFunction{} }

func (policyIDFunction) Metadata(_ context.Context, _ function.MetadataRequest, resp *function.MetadataResponse) {
	resp.Name = "policy_id"
}

func (policyIDFunction) Definition(_ context.Context, _ function.DefinitionRequest, resp *function.DefinitionResponse) {
	resp.Definition = function.Definition{
		Summary: "The id of a jit_policy, from its name and NSG ids",
		MarkdownDescription: "Builds the `id` of a `jit_policy` (`<name>@<nsg id>,...`, NSG ids sorted) for a " +
			"`jit_access_grant` in a workspace that does not share state with the policy's.",
		Parameters: []function.Parameter{
			function.StringParameter{Name: "name", MarkdownDescription: "The policy's `name`."},
			function.ListParameter{Name: "nsg_ids", ElementType: types.StringType, MarkdownDescription: "The policy's `network_security_group_ids`."},
		},
		Return: function.StringReturn{},
	}
}

func (policyIDFunction) Run(ctx context.Context, req function.RunRequest, resp *function.RunResponse) {
	var name string
	var nsgIDs []string
	resp.Error = function.ConcatFuncErrors(req.Arguments.Get(ctx, &name, &nsgIDs))
	if resp.Error != nil {
		return
	}
	if name == "" || strings.ContainsAny(name, "@,") {
		resp.Error = function.NewArgumentFuncError(0, fmt.Sprintf("name %q is not a policy name", name))
		return
	}
	if len(nsgIDs) == 0 {
		resp.Error = function.NewArgumentFuncError(1, "nsg_ids needs at least one network security group id")
		return
	}
	for _, id := range nsgIDs {
		if err := validators.CheckNetworkSecurityGroupID(id); err != nil {
			resp.Error = function.NewArgumentFuncError(1, err.Error())
			return
		}
	}
	resp.Error = resp.Result.Set(ctx, policyID(name, nsgIDs))
}
