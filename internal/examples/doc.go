// Package examples holds the checks of the repository's examples/ folder:
// every folder with Terraform files validates on its own against the
// locally built provider, every workflow passes actionlint, and the
// Kubernetes manifests decode strictly into the Kubernetes API types.
// It has no code of its own.
package examples
