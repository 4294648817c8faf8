// Package daemon is jitd's engine: it watches the network security groups in
// a scope and closes JIT grant rules when their time is up, or as soon as
// they no longer mean what a grant must mean.
//
// A reconcile step is observe → plan → apply. Observing lists the rules of
// each NSG (bounded concurrency; the Azure client honours 429 and
// Retry-After). Planning is PlanNSG, a pure function of one NSG's rules,
// the time and the policies last seen intact there, so every decision is
// unit-testable without Azure or a clock. Applying closes the rules the
// plan closes (a rule already gone is left to whoever closed it, so two
// replicas do no harm), restores
// partial policies and reports everything else. After every step the
// NSG is re-armed for the close of its next grants to expire and for the
// watch interval; a timer on the earliest of those re-reconciles just the
// NSGs that are due
// (so every NSG in scope is read at least once per watch interval, and a
// grant written anywhere in scope is seen before it expires), and a
// periodic full resync re-discovers the scope (NSGs added to it).
//
// A close starts ahead of its grant's expiry by the close lead, the time
// jitd's own close writes have been seen to take (lead.go), so that the rule
// is gone at about the expiry rather than a long-running NSG write after
// it; an NSG's due closes go into one write, made outside the loop
// (closing.go). No rule is gone more than the lead before its expiry
// (jit.CloseDue).
//
// The scope's NSGs come from a Scope: listed through ARM, or, when the
// Scope is an Inventory (Azure Resource Graph, discovery.go), only those
// holding JIT rules, read through ARM when new, changed, missing from the
// answer, or holding grants at a full resync. Expiry closes never wait on
// the inventory: they run on the timers set from jitd's own ARM reads.
//
// Closing means deleting an Allow rule in the jit- namespace, which can only
// take access away. Deny rules (a policy's guards and deny-all) are never
// deleted, even when they are tampered with, because deleting them would
// open the ports they protect: they are reported instead. Rules outside
// the jit- namespace are never modified or deleted.
//
// A close is a whole-NSG write (If-Match) that deletes the grant's rule
// and keeps its ended-grant record (jit.EndGrant). The only other write
// jitd makes is a restore. The provider writes a policy's
// guard and deny-all rules in one NSG write, so a policy with some of them
// missing was changed by someone else and its ports may be open: jitd writes
// the missing rules back (jit.PlanRestore: from the policy as last seen
// intact, kept in memory per NSG, or rebuilt from the remaining rules when
// they carry everything), in one whole-NSG write with If-Match whose first
// change checks the NSG again just before the write. Remaining rules that
// are not exactly the policy's are tampering: reported, never guessed
// around. A policy all of whose rules vanished is reported once
// (policy_missing), never rewritten: it may have been removed on purpose.
package daemon
