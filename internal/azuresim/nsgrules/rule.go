// Package nsgrules models Azure's semantics of network security group rules:
// what Azure accepts when a security rule is written (ValidateRule,
// ValidateLimits) and which rule decides a flow (Evaluate, EvaluatePath).
//
// It is the local Azure simulator's ground truth and deliberately shares no
// code with the project's domain package, so that tests comparing the two
// catch mistakes in either. Error codes and messages follow what Azure
// Resource Manager answers; where Azure's wording could not be confirmed the
// constant's comment says so.
package nsgrules

import (
	"fmt"
	"net/netip"
)

// Rule is one security rule as a client sent it to Azure.
//
// Azure stores each address and port list in either a singular field
// (sourceAddressPrefix) or a plural one (sourceAddressPrefixes); the slices
// hold whichever the client used and the *Plural flags say which, because
// Azure accepts service tags and "*" only in the singular fields.
type Rule struct {
	Name      string
	Priority  int32
	Direction string // "Inbound" | "Outbound" (as received; validation checks it)
	Access    string // "Allow" | "Deny"
	Protocol  string // "Tcp", "Udp", "Icmp", "Esp", "Ah", "*"

	// SourcePrefixes and DestinationPrefixes hold whichever of the
	// singular/plural fields the client used.
	SourcePrefixes, DestinationPrefixes []string
	SourcePorts, DestinationPorts       []string

	// The *Plural flags are true when the plural field was used (service
	// tags are only allowed alone in the singular field).
	SourcePrefixesPlural, DestinationPrefixesPlural bool
	SourcePortsPlural, DestinationPortsPlural       bool

	// BothSourcePrefixForms and BothDestinationPrefixForms are true when the
	// client set the singular AND the plural field, which Azure refuses.
	BothSourcePrefixForms, BothDestinationPrefixForms bool

	// SourceASGs and DestinationASGs count the application security groups
	// the rule references.
	SourceASGs, DestinationASGs int

	Description string
}

// Error is one Azure validation failure, ready to serialise as ARM's
// {"error":{"code":…,"message":…,"target":…}}.
type Error struct {
	Status        int
	Code, Message string
	// Target is the id of the resource at fault (the security rule or the
	// network security group). Several of Azure's messages do not name the
	// rule, so the id travels here as ARM's "target".
	Target string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Env says what service tags mean in this simulated network.
type Env struct {
	// VirtualNetworkPrefixes is the address space of the VirtualNetwork tag
	// (the virtual network, its peers and on-premises ranges). Nil means
	// RFC 1918 + 100.64.0.0/10 + fc00::/7.
	VirtualNetworkPrefixes []netip.Prefix

	// ServiceTagPrefixes gives other service tags (Storage,
	// Sql.WestEurope, AzureCloud, …) an address space, keyed by tag name
	// case-insensitively. A tag that is valid but absent here matches no
	// address: the simulator cannot know Azure's published ranges.
	ServiceTagPrefixes map[string][]netip.Prefix
}

// Flow is one connection attempt to judge, as Network Watcher's IP flow
// verify describes it. Addresses are IPv4 or IPv6 literals; ports are
// ignored for protocols that carry none (Icmp, Esp, Ah).
type Flow struct {
	Direction, Protocol, Source string
	SourcePort                  int
	Destination                 string
	DestinationPort             int
}

// Match is the rule that decided a flow.
type Match struct {
	Allowed  bool
	RuleName string
	Priority int32
	// Default is true when one of Azure's default rules decided.
	Default bool
}
