// Package sessions holds the end-to-end proof that live sessions end when
// access ends, with real packets: the real terraform CLI applies a
// jit_policy and a jit_access_grant through the provider binary against the
// local Azure process, jitd (a real process) closes the grant at expiry,
// and a kernel dataplane (internal/dataplane: network namespaces, nftables,
// conntrack) enforces the local Azure's rules on real TCP connections from
// the grantee and from others to a listener standing in for sshd.
//
// Two NSGs side by side run the same story, one policy with
// end_sessions_at_expiry and one without: before the grant nobody
// connects; after the apply the grantee connects and nobody else does; a
// connection is held open across expiry; after jitd closes the grant new
// connections fail, and the held one survives without the option and is
// cut with it. After each step the kernel's verdict for every source and
// port equals the local Azure's flow verification, and the local Azure's
// own model of established connections says the same of the held one.
//
// The tests need root, network namespaces and the ip, nft and conntrack
// tools (CI installs them); elsewhere they skip with one line saying why.
//
//	go test ./internal/sessions/ -run TestSessionsEndAtExpiry -v
//	JIT_SESSIONS_BENCH=20 go test ./internal/sessions/ -run TestSessionsCutLatency -v   # the figures in BENCHMARKS.md
package sessions
