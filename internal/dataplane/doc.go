// Package dataplane makes the local Azure's network security group rules
// real for Linux kernel packets, so that tests prove reachability with real
// TCP connections instead of asking the simulator.
//
// A Dataplane is a "VM" in a network namespace with echo servers on a set of
// TCP ports, and one namespace per client address, each joined to the VM by
// a veth pair with /32 routes. The VM's inbound traffic is filtered by an
// nftables ruleset compiled from the NSGs on its path (the subnet's, then
// the NIC's), read with the armnetwork SecurityGroupsClient from the local
// Azure over HTTPS:
//
//	a flow already admitted (conntrack mark 1) or opened by the VM (mark 2)
//	passes
//	then, for each NSG on the path, its inbound rules and Azure's default
//	rules in priority order: an Allow goes on to the next NSG, a Deny
//	answers with a TCP reset; a flow all of them allow is marked admitted
//
// It follows the local Azure: it polls the event log (GET /_sim/events) and
// re-reads and recompiles an NSG when a write to it was accepted or
// finished; Sync does the same on demand and returns when the kernel
// enforces every write that completed before it. An NSG has changed when
// its ETag or its rules have: a rule's DELETE shows the new ETag while the
// rule is still in force, and removes the rule at completion under the same
// ETag. The ruleset is replaced atomically (one nft -f transaction). When a
// changed NSG has flushConnection set, the conntrack entries of flows to the
// VM are deleted after the new ruleset is in place, so the next packet of
// every held connection is judged again: with nf_conntrack_tcp_loose=1 an
// allowed flow is picked up mid-stream and goes on; a denied one gets a
// reset. The mark, not conntrack's "established", is what lets a flow pass
// unjudged: after a flush, the VM's next reply makes conntrack pick the flow
// up again as established, and the client's next packet must still be
// judged. Such an entry's original direction runs from the VM, so a later
// flush finds it by its admitted mark, not by its destination; flows the VM
// opened carry their own mark and are left alone. Without flushConnection
// established flows keep passing after their allow rule goes, as Azure
// documents.
//
// Choices and limits:
//
//   - Azure drops a denied packet silently; this dataplane answers a denied
//     TCP packet with a reset instead, so that a denied connect or a cut
//     connection shows at once and tests need no timeouts.
//   - IPv4 and TCP only. Other IPv4 packets to the VM are dropped; UDP, ICMP
//     and IPv6 rules are not enforced. Outbound rules are not enforced (the
//     VM's replies and resets always leave).
//   - Rules whose source or destination is an application security group
//     never match, as in the local Azure's evaluator.
//   - Service tags are resolved with nsgrules.Env.Resolve: the same
//     environment as the evaluator (Config.Env; its zero value is the one
//     the local Azure's flow verification uses).
//   - Virtual Network Manager admin rules are not modelled.
//   - An NSG on the path that cannot be found fails closed: every new flow
//     is refused and Sync reports it.
//
// The machine must let the test create network namespaces (root) and have
// ip (iproute2), nft (nftables) and conntrack (conntrack-tools) on PATH;
// Skip and Start skip a test with one line otherwise. Namespaces are named
// "jitdp-<pid>-<n>-…": Close deletes them, and a later run deletes those
// whose process is gone.
//
// It is built on the ip, nft and conntrack command-line tools rather than
// netlink libraries: an nft -f transaction replaces the whole ruleset
// atomically with a text that can be read in a failure message, and the
// tools are what an operator would use to inspect the namespaces. Sockets
// are created inside the namespaces from Go (setns on a locked OS thread,
// golang.org/x/sys/unix), so the test's own code makes real connections.
package dataplane
