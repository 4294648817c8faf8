package jit

// Direction is the traffic direction a security rule applies to.
type Direction string

// Directions as Azure spells them.
const (
	Inbound  Direction = "Inbound"
	Outbound Direction = "Outbound"
)

// Access is what a matching security rule does with a flow.
type Access string

// Access values as Azure spells them.
const (
	Allow Access = "Allow"
	Deny  Access = "Deny"
)

// Protocol is a security rule's protocol as Azure spells it.
type Protocol string

// Protocols Azure accepts on a security rule.
const (
	ProtocolTCP  Protocol = "Tcp"
	ProtocolUDP  Protocol = "Udp"
	ProtocolICMP Protocol = "Icmp"
	ProtocolESP  Protocol = "Esp"
	ProtocolAH   Protocol = "Ah"
	ProtocolAny  Protocol = "*"
)

// SecurityRule is one network security group rule, independent of any SDK.
//
// Azure stores a rule's addresses and ports either in a singular field
// (sourceAddressPrefix) or in a plural one (sourceAddressPrefixes), never
// both; here both shapes are one slice. A rule that refers to application
// security groups cannot be judged from its prefixes alone, so that fact is
// kept rather than silently dropped.
type SecurityRule struct {
	Name                string
	Priority            int32
	Direction           Direction
	Access              Access
	Protocol            Protocol
	SourcePrefixes      []string
	SourcePorts         []string
	DestinationPrefixes []string
	DestinationPorts    []string
	Description         string

	// UsesApplicationSecurityGroups is true when the rule's source or
	// destination names application security groups.
	UsesApplicationSecurityGroups bool
}

// RuleNamePrefix starts the name of every rule this project manages. Rules
// without it are never modified or deleted.
const RuleNamePrefix = "jit-"
