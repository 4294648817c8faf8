package jit

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Severity says whether a Notice stops what it is about (a plan, an
// apply) or only informs.
type Severity int

// Severities of a Notice.
const (
	Warning Severity = iota // informs; nothing is stopped
	Error                   // stops the plan or apply it is about
)

// Notice is a finding the user should read: a summary in Title Case and a
// detail saying what was found, where, and what to do. The domain decides
// both, so every place that reports the same finding says the same words;
// the provider only turns a Notice into a diagnostic.
type Notice struct {
	Severity Severity
	// Attribute, when not empty, is the attribute the notice is about, as
	// the provider names it (like FieldError.Path), so Terraform can point
	// at its line.
	Attribute string
	Summary   string
	Detail    string
}

// Attributes a Notice can point at.
const (
	attrFailOnBypass   = "fail_on_bypass"
	attrFailOnStanding = "fail_on_standing_access"
	attrFailOnAdmin    = "fail_on_admin_override"
)

// rfc3339 formats a time as messages and audit reasons show it.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// MergedSourcesNotice warns when the allowed sources as configured differ
// from how the NSG records them (the guard stores their complement, so they
// read back merged and minimal): an import, or another workspace, would
// read back p.AllowedSources and plan an update that changes nothing.
func MergedSourcesNotice(configured []string, p Policy) (Notice, bool) {
	if slices.Equal(sortedCopy(configured), sortedCopy(p.AllowedSources)) {
		return Notice{}, false
	}
	return Notice{Severity: Warning, Attribute: pathSources, Summary: "Allowed Sources Read Back Merged",
		Detail: fmt.Sprintf("The NSG records allowed_source_address_prefixes as %s (adjacent ranges merged, single addresses "+
			"without a prefix length). Write them "+
			"that way so that an import or another workspace reads back exactly this configuration; as written, an "+
			"imported policy plans an update that changes nothing on Azure.", strings.Join(p.AllowedSources, ", "))}, true
}
