// Package azuresim is a local stand-in for the parts of Azure this project
// talks to: the cloud metadata endpoint, Entra ID's token endpoints and Azure
// Resource Manager for network security groups and their security rules, and
// for the network around a VM: virtual networks, subnets and network
// interfaces with their NSG associations and private addresses, minimal
// virtual machines (their network interfaces), Azure Virtual Network
// Manager's effective security admin rules of a virtual network, and
// Network Watcher's IP flow verify.
//
// It is a real HTTPS server, so the unmodified azidentity and armnetwork
// clients (and other ARM clients such as the Azure CLI or the azurerm
// provider) work against it through ARM_METADATA_HOSTNAME and SSL_CERT_FILE.
// It reproduces the Azure behaviour that matters to JIT access: long-running
// operations, ETags, Azure's validation errors, one write at a time per NSG
// (later writes queued behind it, as on today's ARM, or refused: BusyMode),
// subscription write throttling and injected faults. Tests assert real
// reachability with VerifyFlow, a Network Watcher style flow check, through
// given NSGs or through a network interface's subnet and NIC NSGs.
//
// It serves many subscriptions of one tenant: the default one
// (Options.SubscriptionID, the one Environ names) and Options.Subscriptions
// (ExtraSubscriptionIDs makes deterministic ids; the azuresim command's
// -subscriptions flag takes a count or a list; a seed file's
// "subscriptions" adds more). GET /subscriptions lists them, default first,
// paged by nextLink. Every resource lives in the subscription its id names:
// its store key is subscription, resource group and name, all
// case-insensitive as on ARM, so two subscriptions may hold an NSG of the
// same group and name; resource groups, lists and Network Watcher's
// automatic watchers are per subscription. A request naming a subscription
// it does not serve meets 404 SubscriptionNotFound. Write throttling is one
// token bucket for all of them.
//
// Security admin rules come first, with Azure's documented semantics
// (learn.microsoft.com/azure/virtual-network-manager/concept-security-admins):
// the admin rules of the flow's virtual network are evaluated by priority,
// lowest number first; the first match decides if its access is
// AlwaysAllow (allowed, NSGs not evaluated) or Deny (denied, NSGs not
// evaluated), and hands the flow to the NSGs if it is Allow; with no match
// the NSGs decide alone. A Verdict decided by an admin rule has RuleName
// "admin:<name>" and DecidedBy "adminRule"; IP flow verify names it
// "securityAdminRules/<name>" (Azure does not document its own wording).
// Admin rules are set per virtual network id (seed file
// "virtualNetworkAdminRules", SetAdminRules, /_sim/admin-rules) and served
// by ListNetworkManagerEffectiveSecurityAdminRules with skipToken paging
// ($top sets the page size, default 100).
//
// IP flow verify takes a VM (targetResourceId) and judges one flow per call
// through the admin rules, the subnet's NSG and the NIC's NSG of its NIC
// (targetNicResourceId, which must be the VM's, else its primary NIC). It
// must be asked of the network watcher of the VM's region. As on Azure, a
// region with a virtual network has NetworkWatcher_<region> in
// NetworkWatcherRG until it is deleted, and one watcher per region may be
// created explicitly. Virtual machines are only their network interfaces;
// their writes, and watchers', complete at once.
//
// NSGs are stateful, as on Azure: EstablishFlow opens a connection if
// VerifyFlow allows its flow at that moment, and the connection outlives the
// rule that admitted it. Only the NSG property flushConnection changes that:
// when a write to an NSG on a connection's path commits and that NSG, as
// committed, has flushConnection true (including the write that turns it
// on), the connection is re-evaluated against the committed rules of every
// NSG on its path and, if they deny it, cut at the operation's completion
// time, naming the rule that denied it. Writes to NSGs with flushConnection
// false or absent, failed operations and tag updates cut nothing. A
// connection's path is fixed when it is established; an NSG deleted since
// drops out of it. The admin rules of its virtual network take part in that
// re-evaluation as they stand then (a Deny admin rule cuts, an AlwaysAllow
// keeps); changing admin rules alone re-evaluates nothing, since Azure
// documents re-evaluation of established flows only for flushConnection.
//
// Its own endpoints live under /_sim/:
//
//	GET  /_sim/counters              request counters (Counters); POST /_sim/counters/reset zeroes them
//	GET  /_sim/events                accepted NSG and rule writes (Events)
//	POST /_sim/flow/verify           judge a Flow (VerifyFlow), answers a Verdict
//	POST /_sim/flow/establish        open a connection for a Flow (EstablishFlow), answers a Connection
//	GET  /_sim/flow/connections/{id} alive, or when and by which rule cut (ConnectionState); DELETE closes it
//	GET|PUT /_sim/config             {"writeLatency":"250ms","faultRate":0.1,"graphLag":"30s"}
//	PUT  /_sim/admin-rules           {"virtualNetworkId":"…","rules":[<EffectiveSecurityAdminRule>…]} (SetAdminRules);
//	                                 GET ?virtualNetworkId=… shows them
//	GET  /_sim/msi/token             App Service managed identity (ManagedIdentityEndpoint)
//	GET  /_sim/github/idtoken        GitHub Actions OIDC token request (GitHubIDTokenRequest)
//	GET  /_sim/oidc/...              discovery document and keys of the federated token issuer
//	POST /_sim/ado/oidctoken         Azure DevOps OIDC token request (AzureDevOpsOIDCRequest)
//	POST /_sim/certificates          register PEM client certificates (RegisterClientCertificate)
//	POST /_sim/federated-token       issue a federated token ?subject=… (IssueFederatedToken)
//	GET  /_sim/identity              the values of the token sources above, for a process's users
//
// Besides Entra ID's token endpoint, which accepts client secrets,
// certificate-signed assertions and its issuer's federated tokens, it serves
// IMDS's managed identity endpoint at /metadata/identity/oauth2/token
// (IMDSEndpoint).
//
// Writes complete lazily: an operation's result is applied the first time
// anything looks at its NSG after its due time, so no goroutine runs per
// operation and a zero write latency costs nothing. While connections are
// open, due operations complete in the order they came due, so each
// re-evaluation sees the other NSGs as they were at that moment; reading a
// connection's state completes the operations due first.
//
// The package keeps one resource kind per file on one shared ARM resource
// engine:
//
//	engine.go         the engine: entries (committed state and accepted writes), long-running
//	                  operations and their polling URLs, lazy completion, preconditions, busy
//	                  answers (BusyMode), the shared GET/list/PUT/DELETE of top-level kinds
//	handlers.go       request and response plumbing: bodies, names, accepted writes, paged lists
//	arm.go            ARM routing, authentication, api-version checks, subscriptions and providers
//	subscriptions.go  the served subscriptions, their ids and GET /subscriptions
//	resourcegroup.go  resource groups (implicit and explicit), their contents and deletion
//	nsg.go            network security groups: state, write queue, handlers, associations
//	rules.go          security rules (children of an NSG) and default rules
//	vnet.go           virtual networks
//	subnet.go         subnets (children of a virtual network)
//	nic.go            network interfaces, their IP configurations and addresses
//	network.go        routing of the network kinds; references between them
//	watcher.go        network watchers (explicit and automatic)
//	flowverify.go     flows through a network interface and IP flow verify
//	vm.go             virtual machines (their network interfaces only)
//	adminrules.go     Virtual Network Manager's effective security admin rules
//	defender.go       Defender for Cloud JIT network access policies
//	connections.go    established connections and their re-evaluation (flushConnection)
//	seed.go           the seed file
//	resourcegraph.go  Azure Resource Graph: the query jitd sends, paging, the user quota, lag
//	throttle.go       the subscription write token bucket and ARM's read limit
//	model.go          a security rule's wire format
//	observe.go        Counters, Events and VerifyFlow's judgement
//	sim.go            the /_sim/ control endpoints
//	server.go         Options, Start and the server's own methods
//	entra.go, identity.go, jwt.go, metadata.go, ca.go
//	                  Entra ID, managed identity and federated tokens, the metadata endpoint, the CA
//
// A kind on the engine supplies its state type (a resourceMeta and its own
// model, with clone and withProvisioningState), its store key and its
// rendering; the engine supplies the rest. NSGs add to it their write
// queue, the Events their writes record and the connection re-evaluation
// their commits may trigger.
package azuresim
