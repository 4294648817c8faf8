package daemon

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// fakeWatcher answers IP flow verify by evaluating the fake Azure's rules
// as Azure would, naming the deciding rule as Azure does.
type fakeWatcher struct {
	az    *fakeAzure
	mu    sync.Mutex
	calls int
}

func (w *fakeWatcher) Targets(_ context.Context, nsgID string) ([]jit.VerifyTarget, []string, error) {
	return []jit.VerifyTarget{{VMID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-" + nsgID,
		NICID: "nic-" + nsgID, Region: "westeurope", Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.4")}}}, nil, nil
}

func (w *fakeWatcher) VerifyIPFlow(_ context.Context, p jit.Probe) (azure.IPFlowVerdict, error) {
	w.mu.Lock()
	w.calls++
	w.mu.Unlock()
	nsg := strings.TrimPrefix(p.NICID, "nic-")
	ok, rule := jit.Allowed([][]jit.SecurityRule{w.az.rulesOf(nsg)}, jit.Flow{Protocol: p.Protocol, Source: p.Remote, Destination: p.Local, Port: p.Port})
	v := azure.IPFlowVerdict{Access: jit.Deny}
	if ok {
		v.Access = jit.Allow
	}
	if rule != nil {
		v.RuleName = "securityRules/" + rule.Name
		if rule.Priority >= 65000 {
			v.RuleName = "defaultSecurityRules/" + rule.Name
		}
	}
	return v, nil
}

func (w *fakeWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls
}

// TestPassVerifiesChangedNSGs: with Verify, jitd asks IP flow verify about
// an NSG when it first reads it and after each change, reports each
// mismatch once as a verify_mismatch finding naming Azure's rule, and
// drops it once a verification no longer finds it.
func TestPassVerifiesChangedNSGs(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	foreign := jit.SecurityRule{Name: "allow-any-ssh", Priority: 90, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
		SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
	az.put("nsg-a", append(web.Rules(), grantRule(t, web, "g1", time.Now().Add(time.Hour)), foreign)...)
	w := &fakeWatcher{az: az}
	d, rec := newTestDaemon(t, az, Options{Verify: w})

	if sum := d.Pass(t.Context()); sum.Err() != nil {
		t.Fatal(sum.Err())
	}
	// Port 22: the grant, an outside and an allowed address; port 3389:
	// the last two.
	if w.count() != 5 {
		t.Errorf("first pass: %d IP flow verify calls, want 5", w.count())
	}
	verifyEvents := func() []string {
		var out []string
		for _, e := range rec.all() {
			if e.Kind == string(FindingVerifyMismatch) {
				out = append(out, string(e.Action)+" "+e.RuleName+": "+e.Reason)
			}
		}
		return out
	}
	want := []string{
		"find securityRules/allow-any-ssh outside 22/Tcp: IP flow verify: 192.0.2.1, outside policy web's allowed sources, reaches 10.0.1.4 22/Tcp " +
			"(Allow, must be Deny; decided by securityRules/allow-any-ssh) on VM vm-nsg-a",
		"find securityRules/allow-any-ssh allowed_no_grant 22/Tcp: IP flow verify: 203.0.113.1, an allowed source of policy web with no grant, " +
			"reaches 10.0.1.4 22/Tcp (Allow, must be Deny; decided by securityRules/allow-any-ssh) on VM vm-nsg-a",
	}
	if got := verifyEvents(); !slices.Equal(got, want) {
		t.Errorf("verify findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := testutil.ToFloat64(d.metrics.findings.WithLabelValues(string(FindingVerifyMismatch))); n != 2 {
		t.Errorf("jitd_findings_total{kind=verify_mismatch} = %v, want 2", n)
	}
	if n := testutil.ToFloat64(d.metrics.verifyProbes.WithLabelValues("mismatch")); n != 2 {
		t.Errorf("jitd_verify_probes_total{result=mismatch} = %v, want 2", n)
	}

	// Nothing changed: nothing is asked, nothing reported again, and the
	// finding stays open.
	d.Pass(t.Context())
	if w.count() != 5 || len(verifyEvents()) != 2 {
		t.Errorf("unchanged NSG: %d calls, events %q", w.count(), verifyEvents())
	}
	if n := testutil.ToFloat64(d.metrics.openFindings.WithLabelValues(string(FindingVerifyMismatch))); n != 2 {
		t.Errorf("jitd_open_findings{kind=verify_mismatch} = %v, want 2", n)
	}

	// The foreign rule goes: the change is verified, the findings close.
	az.remove("nsg-a", foreign.Name)
	d.Pass(t.Context())
	if w.count() != 10 || len(verifyEvents()) != 2 {
		t.Errorf("after the change: %d calls, events %q", w.count(), verifyEvents())
	}
	if n := testutil.ToFloat64(d.metrics.openFindings.WithLabelValues(string(FindingVerifyMismatch))); n != 0 {
		t.Errorf("jitd_open_findings{kind=verify_mismatch} = %v, want 0", n)
	}
	if n := testutil.ToFloat64(d.metrics.verifyProbes.WithLabelValues("match")); n != 8 {
		t.Errorf("jitd_verify_probes_total{result=match} = %v, want 8", n)
	}
}

// A grant judged active whose source Azure denies is a mismatch naming
// the rule that denies it.
func TestVerifyNSGReportsADeniedGrant(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	g := grantRule(t, web, "g1", time.Now().Add(time.Hour))
	az.put("nsg-a", web.Rules()...)
	w := &fakeWatcher{az: az}
	// The grant is judged active from a read that still had its rule, and
	// the rule is gone when Azure is asked.
	policies, active := VerifyInputs("nsg-a", append(web.Rules(), g), time.Now(), true)
	v := VerifyNSG(t.Context(), w, "nsg-a", policies, active, make(chan struct{}, 2))
	m := v.Mismatches()
	if len(m) != 1 || m[0].Kind != "grant" || m[0].GrantID != "g1" || m[0].Access != "Deny" || m[0].RuleName != "securityRules/jit-web-deny-tcp" {
		t.Fatalf("mismatches %+v", m)
	}
	if f := v.Findings(); len(f) != 1 || f[0].RuleName != "securityRules/jit-web-deny-tcp grant 22/Tcp" ||
		!strings.Contains(f[0].Detail, "grant g1's source 203.0.113.7 cannot reach 10.0.1.4 22/Tcp") {
		t.Errorf("findings %+v", f)
	}
}

// slowWatcher is a fakeWatcher whose answers wait for release, as Azure's
// take seconds each.
type slowWatcher struct {
	*fakeWatcher
	release chan struct{}
}

func (w *slowWatcher) VerifyIPFlow(ctx context.Context, p jit.Probe) (azure.IPFlowVerdict, error) {
	select {
	case <-w.release:
	case <-ctx.Done():
		return azure.IPFlowVerdict{}, ctx.Err()
	}
	return w.fakeWatcher.VerifyIPFlow(ctx, p)
}

// A verification under way never holds up a close: a grant on another NSG
// is closed at its expiry while Azure has not answered yet, and the
// mismatch is reported once it does.
func TestRunVerificationDoesNotDelayCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		foreign := jit.SecurityRule{Name: "allow-any-ssh", Priority: 90, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
			SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
		az.put("nsg-a", append(web.Rules(), foreign)...)
		soon := start.Add(90 * time.Second).Truncate(time.Second)
		az.put("nsg-b", append(web.Rules(), grantRule(t, web, "soon", soon))...)
		w := &slowWatcher{fakeWatcher: &fakeWatcher{az: az}, release: make(chan struct{})}
		d, rec := newTestDaemon(t, az, Options{Interval: time.Hour, Verify: w})
		stop := startRun(t, d)
		defer stop()

		time.Sleep(time.Until(soon))
		synctest.Wait()
		if got := az.deleted(); len(got) != 1 || got[0].rule != "jit-web-g-soon" || !got[0].at.Equal(soon) {
			t.Fatalf("deletions while verifications wait = %+v, want jit-web-g-soon at %v", got, soon)
		}
		close(w.release)
		synctest.Wait()
		var found []string
		for _, e := range rec.all() {
			if e.Kind == string(FindingVerifyMismatch) {
				found = append(found, strings.Join(e.NSGIDs, ",")+" "+e.RuleName)
			}
		}
		want := []string{"nsg-a securityRules/allow-any-ssh outside 22/Tcp", "nsg-a securityRules/allow-any-ssh allowed_no_grant 22/Tcp"}
		slices.Sort(found)
		slices.Sort(want)
		if !slices.Equal(found, want) {
			t.Errorf("verify findings %q, want %q", found, want)
		}
	})
}
