// Package lifecycle is the randomized lifecycle suite: the proof of the
// access invariant of DESIGN.md ("The promise, as an invariant") at the
// edges users hit. It has no code of its own outside its tests.
//
// Each run starts real processes: the local Azure (the azuresim binary),
// terraform (the CLI on PATH, the freshly built provider through
// dev_overrides, no init) and jitd (--watch-interval 1s, --interval 1m),
// all in a resource group of the run's own with three NSGs that carry a
// pre-existing rule letting the office and a partner range in. A seeded
// generator then draws operations: grant applies (valid and invalid),
// clock jumps, out-of-band revoke and tamper, deleting a policy's guard or
// deny-all rule, policy changes (add or remove an NSG, also one whose id is
// unknown at plan; ports, sources, max duration, band, rename), apply
// -replace, state rm and re-apply, import of a grant and of the policy,
// refresh-only, a saved plan applied after a clock jump, create timeouts
// shorter than the local Azure's write latency, SIGINT and SIGKILL of
// terraform mid-write, kill -9 and restart of jitd, foreign rules above,
// inside and below the band (bypassing and standing), a stale whole-NSG PUT
// by another writer, and injected faults.
//
// After every step a checker compares the world with a tiny model, polling
// up to a deadline for the product's asynchronous effects (jitd closing,
// restoring, reporting):
//
//   - flow verification over every NSG × granted, allowed-but-not-granted
//     and outside sources × protected ports and an unprotected one: an
//     allowed flow to a protected port needs a request that opened (state
//     said active) and whose one window [first open, first open + duration]
//     has not ended and that has not ended on that NSG (revoked, closed), or
//     a foreign rule the product has reported (a jitd finding or the
//     policy's bypassing_rules). A request is identified by its attributes,
//     so -replace, state loss, import or asking again identically never
//     give it a second window;
//   - every grant rule on an NSG is held by a grant in state (except just
//     after a state rm, or a request whose terraform was SIGKILLed, inside
//     its window); right after a successful apply every active grant in
//     state has its rule on each of its NSGs;
//   - the policy's guard and deny-all rules are on every NSG it protects;
//   - foreign rules are byte-identical (JSON of their properties) to what
//     the suite planted; none is deleted, none appears;
//   - every grant rule seen open has an audited open, every one that
//     disappeared without the suite deleting it an audited close (provider
//     JIT_AUDIT_LOG_PATH and jitd --audit-log).
//
// Time: the provider and jitd read JIT_TEST_CLOCK_OFFSET_FILE
// (jit.ClockFromEnv), a testing hook; the suite moves their clock forward
// instead of waiting. jitd's timers run in real time, so after a jump it
// notices at its next watch read, one second later: the checker's deadline
// covers that.
//
// Why a hand-rolled seeded generator and not pgregory.net/rapid: a step
// here is one or more terraform runs against real processes (about a
// second each) and the world (NSGs, state, jitd, audit logs) cannot be
// reset cheaply between the hundreds of replays rapid's shrinking does.
// The generator draws from math/rand/v2's PCG seeded with the run's seed;
// a failure prints the seed and the numbered step list, and
// JIT_LIFECYCLE_SEED=<seed> JIT_LIFECYCLE_STEPS=<n> replays it (the
// sequence is the same as long as the product behaves the same, and as
// long as the table of operations, ops, keeps its order and weights:
// changing it changes what every seed means, so re-record the regression
// seeds when you do). Seeds
// that found violations are kept in regressionSeeds and run by
// TestLifecycleRegressions.
//
// Running it:
//
//	go test ./internal/lifecycle/ -run TestLifecycle -v        # make test: 4 seeds × 50 steps
//	JIT_LIFECYCLE_SEED=7 JIT_LIFECYCLE_STEPS=30 go test ./internal/lifecycle/ -run 'TestLifecycle$' -v
//	JIT_SOAK=1 go test ./internal/lifecycle/ -run TestLifecycle -v -timeout 6h  # make test-soak: 100 seeds × 100 steps
//
// JIT_LIFECYCLE_CONTINUE=1 surveys instead of stopping: a violation is
// logged with its step list, the world repaired (unexplained grant rules
// and unreported foreign rules deleted, the policy re-applied, changed
// foreign rules and unaudited events accepted) and the run goes on; the
// test still fails at the end. TestLifecycleScenarios holds the minimal
// step list of each violation found, one world each.
//
// Skipped with -short and when terraform is not found.
package lifecycle
