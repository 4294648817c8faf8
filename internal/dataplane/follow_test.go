package dataplane_test

import (
	"testing"
	"time"
)

// TestFollowsWithoutSync: with no call to Sync, the dataplane's own polling
// of the event log brings a rule written through ARM into the kernel. The
// test polls real connections with a deadline and logs how long the kernel
// took to follow.
func TestFollowsWithoutSync(t *testing.T) {
	e := start(t, 20*time.Millisecond)
	e.put(t, e.subnetNSG, rule{name: "allow-internet", access: "Allow", prio: 4000, src: []string{"Internet"}, dports: []string{"*"}})
	var lat []time.Duration
	for i, step := range []struct {
		change func()
		want   bool
	}{
		{func() {
			e.put(t, e.nicNSG, rule{name: "jit-ssh", access: "Allow", prio: 100, src: []string{"198.51.100.7"}, dports: []string{"22"}})
		}, true},
		{func() { e.del(t, e.nicNSG, "jit-ssh") }, false},
		{func() {
			e.put(t, e.nicNSG, rule{name: "jit-ssh", access: "Allow", prio: 100, src: []string{"198.51.100.7"}, dports: []string{"22"}})
		}, true},
	} {
		step.change()
		written := time.Now()
		deadline := written.Add(30 * time.Second)
		for {
			ok, err := e.dp.Probe("198.51.100.7", 22)
			if err != nil {
				t.Fatalf("step %d: probe: %v", i, err)
			}
			if ok == step.want {
				lat = append(lat, time.Since(written))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("step %d: the kernel did not follow the write within 30 s (allowed=%v)", i, ok)
			}
		}
	}
	logLatencies(t, "follow latency (ARM write completed -> first probe with the new verdict, 20 ms polling)", lat)
}

// BenchmarkSync measures the time from an ARM write having completed to the
// kernel enforcing it: Sync after a rule is put or deleted in turn.
func BenchmarkSync(b *testing.B) {
	e := start(b, -1)
	r := rule{name: "jit-ssh", access: "Allow", prio: 100, src: []string{"203.0.113.10"}, dports: []string{"22"}}
	i := 0
	for b.Loop() {
		b.StopTimer()
		if i%2 == 0 {
			e.put(b, e.nicNSG, r)
		} else {
			e.del(b, e.nicNSG, r.name)
		}
		i++
		b.StartTimer()
		if err := e.dp.Sync(e.ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDeletedNSGFailsClosed: when an NSG on the path disappears, Sync says
// so and the kernel refuses every new flow rather than letting the other
// NSG decide alone.
func TestDeletedNSGFailsClosed(t *testing.T) {
	e := start(t, -1)
	if ok, err := e.dp.Probe("10.0.2.5", 22); err != nil || !ok {
		t.Fatalf("before: probe from the virtual network: allowed=%v, %v; want allowed", ok, err)
	}
	p, err := e.arm.Groups.BeginDelete(e.ctx, rg, nsgName(e.nicNSG), nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatalf("delete the NIC's NSG: %v", err)
	}
	if err := e.dp.Sync(e.ctx); err == nil {
		t.Fatal("Sync did not report the missing NSG")
	} else {
		t.Logf("Sync: %v", err)
	}
	if ok, err := e.dp.Probe("10.0.2.5", 22); err != nil || ok {
		t.Fatalf("after: probe: allowed=%v, %v; want refused", ok, err)
	}
	if err := e.dp.Sync(e.ctx); err == nil {
		t.Fatal("a later Sync no longer reports the missing NSG")
	}
}
