// Package daemon is jitd's engine: it watches the network security groups in
// a scope and closes JIT grant rules when their time is up, or as soon as
// they no longer mean what a grant must mean.
//
// A reconcile step is observe → plan → apply. Observing lists the rules of
// each NSG (bounded concurrency; the Azure client honours 429 and
// Retry-After). Planning is PlanNSG, a pure function of one NSG's rules and
// the time, so every decision is unit-testable without Azure or a clock.
// Applying deletes the rules the plan closes (a 404 is success, so two
// replicas do no harm) and reports everything else. After every step the
// NSG is re-armed for its next grant expiry; a timer on the earliest of
// those re-reconciles just the NSGs that are due, and a periodic full
// resync catches whatever the timer did not see (grants written since,
// NSGs added to the scope).
//
// Closing means deleting an Allow rule in the jit- namespace, which can only
// take access away. Deny rules (a policy's guards and deny-all) are never
// deleted, even when they are tampered with, because deleting them would
// open the ports they protect: they are reported instead. Rules outside
// the jit- namespace are never modified or deleted.
package daemon
