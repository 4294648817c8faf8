// Package jit is the domain of just-in-time network access: policies, grants,
// the network security group rules that encode them, and the rules for judging
// those rules. It is pure Go: nothing in it knows Terraform or the Azure SDK,
// so the provider, the daemon and the tests share one definition of what a JIT
// rule means.
//
// # The encoding
//
// Everything needed to judge a JIT rule lives on the NSG itself, in native
// rule data, because the daemon is stateless and a grant's workspace may not
// share state with its policy's. A policy owns a priority band [Start, End]
// (100 ≤ Start < End ≤ 4096, at least MinBandSize = 13 priorities) on each of
// its NSGs, laid out in fixed slots:
//
//	Start+0  guard tcp      ┐
//	Start+1  guard tcp v6   │ guards: Deny from everything outside the
//	Start+2  guard udp      │ allowed sources, so Azure itself refuses a
//	Start+3  guard udp v6   │ grant from anywhere else, whoever writes it
//	Start+4  guard any      │
//	Start+5  guard any v6   ┘
//	Start+6  ┐
//	  ...    │ grants: Allow from the requested prefix, one rule per grant
//	End-6    ┘
//	End-5    deny any v6    ┐
//	End-4    deny any       │ deny-all: Deny from * to the protected
//	End-3    deny udp v6    │ ports; what keeps them closed by default
//	End-2    deny udp       │
//	End-1    deny tcp v6    │
//	End-0    deny tcp       ┘
//
// The slot of a (protocol group, address family) pair never changes, so
// adding or removing a protocol or a family on update never moves a guard or
// deny-all rule into priorities a grant may hold. Protocol groups are the
// policy's ports grouped by protocol: Tcp, Udp and * (spelled tcp, udp and
// any in names). Azure refuses IPv4 and IPv6 prefixes in one rule, hence one
// rule per family. With destination "*" both families get guards, and one
// deny-all rule per group (source *, destination *) takes the IPv4 name and
// slot. With specific destinations only the families present among them get
// rules, each with that family's destinations. A guard exists only when the
// allowed sources are not "*" and their complement in the family is not
// empty; with destination "*" and allowed sources of one family only, the
// other family's guard denies every source of that family (0.0.0.0/0 or
// ::/0), so nobody can be granted access over it.
//
// Rule names (at most 80 characters; policy names are 1–40 characters of
// [a-z0-9-], starting with a letter, no "--"):
//
//	jit-<policy>-guard-<tcp|udp|any>[-v6]
//	jit-<policy>-deny-<tcp|udp|any>[-v6]
//	jit-<policy>-g-<grant id>            grant id: 1–16 of [a-z0-9]
//
// Descriptions (at most 140 characters) carry what the rule's structure
// cannot, as a version tag and space-separated key=value fields (see
// Description for the grammar):
//
//	jit:v1 role=guard band=100-199 guard=v4,v6 max=3h
//	jit:v1 role=deny band=100-199 guard=v4,v6 max=3h
//	jit:v1 role=deny band=100-199 guard=none max=22:3h,3389:1h
//	jit:v1 role=grant id=a1b2 exp=1767225600 sum=3ulncbz5ns by=alice@example.com
//	jit:v1 role=ended id=a1b2 exp=1767225600 by=alice@example.com
//
// A guard's description is its protocol group's deny-all description with
// role=guard, so that either rule is enough to write the other back.
// A deny-all description names the address families that have a guard rule
// (v4, v6, both, or none when any source may ask), and gives one maximum
// grant duration when every port of its group shares it, else one per port
// in ascending order; a policy whose description would exceed 140
// characters is refused by NewPolicy. The guard list is what makes a deleted
// guard rule read as a malformed policy instead of one that allows every
// source of that family.
//
// # Reading it back, failing closed
//
// ReadNSG decodes a policy from its rules: ports, protocols and destinations
// from the deny-all rules, band and maximum durations from their
// descriptions, and allowed sources as the complement of the union of each
// family's guard sources (a family the deny-all says has no guard allows
// every source of that family; no guard at all means "*"). The decoded policy is
// then validated with NewPolicy and encoded again, and the result must match
// the rules found exactly: priority, protocol, prefixes, ports and
// description. Anything else — a tampered description, an unknown
// description version, a rule off its slot, a band that disagrees between
// rules, an extra or missing rule — marks the policy malformed on that NSG
// with the reason, rather than yielding a policy that is silently wrong. JIT
// rules whose names or descriptions do not decode at all are listed as
// malformed too; callers treat them as closed (a malformed grant is an
// expired grant). Rules outside the jit- namespace are reported, never
// rewritten.
//
// # Bypasses and conflicts
//
// Policy.Bypasses reports Allow rules outside the policy evaluated before
// its guard (or its deny-all, when there is no guard) that let a protected
// port in from outside the allowed sources: the ports would not really be
// closed. Policy.StandingAccess reports Allow rules outside the policy
// evaluated before its deny-all, above the band or inside it, whose sources
// overlap the allowed sources: the guard turns only outsiders away, so those
// sources (a VPN pool, say) reach the port at any time with no grant. A rule
// and port already reported as a bypass are not repeated. Neither kind of
// rule is ever modified; both are findings. Conflicts reports what would
// make writing a policy to an NSG fail or mean something else: overlapping
// bands, foreign rules inside the band, and Azure's per-NSG rule and prefix
// limits. Allowed evaluates a flow the way Azure does, first match by
// priority through a path of NSGs.
//
// # A grant's life
//
// GrantState is the lifecycle the provider and jitd share (requested →
// active → expired | revoked | closed; the last three are terminal), and
// Observe moves it from what an NSG shows. A grant is identified by its
// request (GrantRequest.ID, a hash of every request field), so the same
// request applied again is recognised: DecideOpen adopts it while it is
// open on every NSG of its policy, and refuses it once it has ended,
// when a record of it is found, or when it is open on only some NSGs (an
// interrupted open or a revocation, closed rather than completed). Ending
// a grant (EndGrant) deletes its rule and leaves a record, an inert
// outbound rule jit-<policy>-e-<id> (see ended.go), where its policy is.
// A grant's rule is sealed (seal.go): its sum covers its name, source,
// ports, protocol, expiry and requester, so a rule edited in place reads as
// malformed on the first read by anyone, with the grant it claims to be.
// Tampered compares a grant's rules with its request. A policy that gains
// an NSG carries its active grants there with MoveGrant, for their
// remaining window; PlanRestore rebuilds a policy's missing guard and
// deny-all rules from those that remain.
//
// # Changing a policy, and what the user reads
//
// Every decision about a policy change is made here; the provider reads the
// NSGs, asks, writes what it is told and renders what it is given:
//
//   - at plan time, Policy.CheckPlanOn judges each NSG (ExistingPolicyNotice,
//     Conflicts, GrantsOutsideBand, SessionNotices) and gathers
//     PolicyFindings, whose BypassNotice, StandingNotice and AdminNotice
//     honour the fail_on_* switches;
//   - PlanPolicyUpdate decides an update from the NSGs the policy had: which
//     NSGs it gains and leaves, which are checked, which grants move with it
//     (MovableGrants: a grant missing or tampered on any NSG that still holds
//     the policy was revoked there and never moves) and which records of
//     ended grants go along (PolicyRecords);
//   - Policy.WriteOn and RemovalNames decide each NSG's single write, and
//     FlushKept and FlushReleased the flushConnection value around it;
//   - ReadBackPolicy decides which NSGs hold the policy intact; ActiveGrants
//     and DeletePolicyNotice refuse a delete while grants are active;
//   - for grants, GrantPolicyCheck finds the policy a grant is judged
//     against, ObserveGrant and OpenDecision.Refused its state, and
//     EndedGrant tells the user that it ended.
//
// What the user reads is a Notice: severity, the attribute it points at,
// and the exact summary and detail, so every path that reports a finding
// says the same words. PolicyID and ParsePolicyID are a policy's id.
package jit
