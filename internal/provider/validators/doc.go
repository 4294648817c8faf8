// Package validators holds the provider's attribute validators: checks that
// need no Azure call and so run during `terraform validate` and plan.
package validators
