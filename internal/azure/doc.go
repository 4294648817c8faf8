// Package azure is the Azure client layer shared by the provider and the
// daemon: it turns an azurerm-style configuration into a credential and a
// cloud, and reads and writes network security group rules through
// armnetwork with the retry, polling and per-NSG serialisation that JIT
// access needs.
//
// Everything it returns speaks the SDK-free types of package jit, and every
// failure is an *Error whose Kind callers test with errors.Is (for example
// errors.Is(err, azure.ErrNotFound)), so no caller has to know azcore.
package azure
