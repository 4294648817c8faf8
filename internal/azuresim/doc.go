// Package azuresim is a local stand-in for the parts of Azure this project
// talks to: the cloud metadata endpoint, Entra ID's token endpoints and Azure
// Resource Manager for network security groups and their security rules, and
// for the network around a VM: virtual networks, subnets and network
// interfaces with their NSG associations and private addresses, and Network
// Watcher's IP flow verify.
//
// It is a real HTTPS server, so the unmodified azidentity and armnetwork
// clients (and other ARM clients such as the Azure CLI or the azurerm
// provider) work against it through ARM_METADATA_HOSTNAME and SSL_CERT_FILE.
// It reproduces the Azure behaviour that matters to JIT access: long-running
// operations, ETags, Azure's validation errors, one write at a time per NSG,
// subscription write throttling and injected faults. Tests assert real
// reachability with VerifyFlow, a Network Watcher style flow check, through
// given NSGs or through a network interface's subnet and NIC NSGs.
//
// Its own endpoints live under /_sim/:
//
//	GET  /_sim/counters              request counters (Counters); POST /_sim/counters/reset zeroes them
//	GET  /_sim/events                accepted NSG and rule writes (Events)
//	POST /_sim/flow/verify           judge a Flow (VerifyFlow), answers a Verdict
//	GET|PUT /_sim/config             {"writeLatency":"250ms","faultRate":0.1}
//	GET  /_sim/msi/token             App Service managed identity (ManagedIdentityEndpoint)
//	GET  /_sim/github/idtoken        GitHub Actions OIDC token request (GitHubIDTokenRequest)
//	GET  /_sim/oidc/...              discovery document and keys of the federated token issuer
//
// Writes complete lazily: an operation's result is applied the first time
// anything looks at its NSG after its due time, so no goroutine runs per
// operation and a zero write latency costs nothing.
package azuresim
