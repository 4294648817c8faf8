// Package jit is the domain of just-in-time network access: policies, grants,
// the network security group rules that encode them, and the rules for judging
// those rules. It is pure Go: nothing in it knows Terraform or the Azure SDK,
// so the provider, the daemon and the tests share one definition of what a JIT
// rule means.
package jit
