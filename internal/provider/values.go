package provider

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// stringList is a known list of strings ([] rather than null when empty).
func stringList(s []string) types.List {
	values := make([]attr.Value, 0, len(s))
	for _, v := range s {
		values = append(values, types.StringValue(v))
	}
	return types.ListValueMust(types.StringType, values)
}

// stringSet is a known set of strings.
func stringSet(s []string) types.Set {
	values := make([]attr.Value, 0, len(s))
	for _, v := range s {
		values = append(values, types.StringValue(v))
	}
	return types.SetValueMust(types.StringType, values)
}

// hasUnknownElement reports whether a list (or set) is unknown or holds an
// unknown element, such as a variable during `terraform validate`.
func hasUnknownElement(v interface {
	IsUnknown() bool
	Elements() []attr.Value
}) bool {
	if v.IsUnknown() {
		return true
	}
	return slices.ContainsFunc(v.Elements(), func(e attr.Value) bool { return e.IsUnknown() })
}

// setStrings reads a set of strings; unknown elements are left out.
func setStrings(ctx context.Context, s types.Set, diags *diag.Diagnostics) []string {
	var out []string
	if s.IsNull() || hasUnknownElement(s) {
		return out
	}
	diags.Append(s.ElementsAs(ctx, &out, false)...)
	return out
}

func nonNilValues(v []attr.Value) []attr.Value {
	if v == nil {
		return []attr.Value{}
	}
	return v
}

// formatDuration writes a duration the way people do: 3h, 90m → 1h30m, not
// 3h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// addFieldErrors reports the domain's validation errors on the attributes
// they name, so Terraform points at the offending line.
func addFieldErrors(diags *diag.Diagnostics, summary string, err error) {
	for _, problem := range unjoin(err) {
		var fe *jit.FieldError
		if errors.As(problem, &fe) {
			// The message starts with the attribute: Terraform points at
			// the line, but an attribute left at its default has none.
			if p, ok := attributePath(fe.Path); ok {
				diags.AddAttributeError(p, summary, fe.Path+": "+fe.Message)
				continue
			}
		}
		diags.AddError(summary, problem.Error())
	}
}

// attributePath turns "ports[1].max_duration" into a path.Path.
func attributePath(s string) (path.Path, bool) {
	if s == "" {
		return path.Empty(), false
	}
	var p path.Path
	first := true
	for _, part := range strings.Split(s, ".") {
		name, rest, hasIndex := strings.Cut(part, "[")
		if name == "" {
			return path.Empty(), false
		}
		if first {
			p = path.Root(name)
			first = false
		} else {
			p = p.AtName(name)
		}
		for hasIndex {
			idx, after, ok := strings.Cut(rest, "]")
			if !ok {
				return path.Empty(), false
			}
			n, err := strconv.Atoi(idx)
			if err != nil {
				return path.Empty(), false
			}
			p = p.AtListIndex(n)
			rest = strings.TrimPrefix(after, "[")
			hasIndex = strings.HasPrefix(after, "[")
		}
	}
	return p, true
}

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		return joined.Unwrap()
	}
	return []error{err}
}

// addNotices reports the domain's notices (jit.Notice) as diagnostics, on
// the attribute each names, if any, so Terraform points at its line.
func addNotices(diags *diag.Diagnostics, notices ...jit.Notice) {
	for _, n := range notices {
		p, onAttribute := attributePath(n.Attribute)
		switch {
		case n.Severity == jit.Error && onAttribute:
			diags.AddAttributeError(p, n.Summary, n.Detail)
		case n.Severity == jit.Error:
			diags.AddError(n.Summary, n.Detail)
		case onAttribute:
			diags.AddAttributeWarning(p, n.Summary, n.Detail)
		default:
			diags.AddWarning(n.Summary, n.Detail)
		}
	}
}
