// Package bench measures the provider and jitd at scale with real processes:
// the terraform CLI with a freshly built provider (dev_overrides), the jitd
// binary, and an in-process local Azure (package azuresim) whose write
// latency, one-write-at-a-time-per-NSG rule, write token bucket, request
// counters and event log make the figures mean what they would on Azure.
//
// The measurements are tests that print figures and assert only behaviour
// (nothing lost, nothing left open), never timings. They are heavy, so they
// run only with JIT_BENCH=1:
//
//	make bench    # writes bench.out; BENCHMARKS.md records the figures
//
// The package has no code outside its tests; this file documents it.
package bench
