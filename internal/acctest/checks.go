package acctest

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Flow is one question for the local Azure's flow verification.
type Flow struct {
	Source, Destination string
	Port                int
	Protocol            string // default Tcp
}

// ExpectReachable is a state check that asks the local Azure whether each
// flow gets through the NSGs, in order, and fails unless it matches want.
// It proves what is open, whatever the rules look like.
func (e *Env) ExpectReachable(nsgIDs []string, want bool, flows ...Flow) statecheck.StateCheck {
	return reachability{env: e, nsgIDs: nsgIDs, want: want, flows: flows}
}

type reachability struct {
	env    *Env
	nsgIDs []string
	want   bool
	flows  []Flow
}

func (r reachability) CheckState(_ context.Context, _ statecheck.CheckStateRequest, resp *statecheck.CheckStateResponse) {
	var wrong []string
	for _, f := range r.flows {
		proto := f.Protocol
		if proto == "" {
			proto = "Tcp"
		}
		if got := r.env.Reachable(r.nsgIDs, f.Source, f.Destination, f.Port, proto); got != r.want {
			wrong = append(wrong, fmt.Sprintf("%s -> %s:%d/%s reachable=%v", f.Source, f.Destination, f.Port, proto, got))
		}
	}
	if len(wrong) > 0 {
		resp.Error = fmt.Errorf("want reachable=%v, got: %s", r.want, strings.Join(wrong, "; "))
	}
}

// Client is an Azure client of the project's own, acting on the local Azure
// like another workspace or an operator would.
func (e *Env) Client() *azure.Client {
	e.t.Helper()
	e.clientOnce.Do(func() {
		var cfg azure.Config
		cfg, e.clientErr = azure.ConfigFromEnv(func(k string) string { return e.Sim.Environ(simtest.CAFile())[k] })
		if e.clientErr != nil {
			return
		}
		cfg.UseCLI = false
		e.client, e.clientErr = azure.NewClient(context.Background(), cfg, azure.ClientOptions{UserAgent: "acctest"})
	})
	if e.clientErr != nil {
		e.t.Fatalf("client for the local Azure: %v", e.clientErr)
	}
	return e.client
}

// PutRules writes rules to an NSG (e.g. another workspace's policy).
func (e *Env) PutRules(nsgID string, rules ...jit.SecurityRule) {
	e.t.Helper()
	c := e.Client()
	for _, r := range rules {
		if _, err := c.PutRule(context.Background(), nsgID, r); err != nil {
			e.t.Fatalf("put rule %s on %s: %v", r.Name, nsgID, err)
		}
	}
}

// DeleteRule deletes one rule, as an operator would out of band.
func (e *Env) DeleteRule(nsgID, name string) {
	e.t.Helper()
	if err := e.Client().DeleteRule(context.Background(), nsgID, name); err != nil {
		e.t.Fatalf("delete rule %s on %s: %v", name, nsgID, err)
	}
}

// Snapshot is every rule of an NSG, by name, as Azure returns it.
type Snapshot map[string]jit.SecurityRule

// Snapshot reads the NSG's rules now.
func (e *Env) Snapshot(nsgID string) Snapshot {
	e.t.Helper()
	rules, err := e.Client().ListRules(context.Background(), nsgID)
	if err != nil {
		e.t.Fatalf("list rules of %s: %v", nsgID, err)
	}
	s := Snapshot{}
	for _, r := range rules {
		s[r.Name] = r
	}
	return s
}

// ExpectUnchanged is a check (for CheckDestroy or a step) that the NSG's
// whole rule set equals the snapshot taken before.
func (e *Env) ExpectUnchanged(nsgID string, before Snapshot) func(*terraform.State) error {
	return func(*terraform.State) error {
		after := e.Snapshot(nsgID)
		if reflect.DeepEqual(before, after) {
			return nil
		}
		var diff []string
		for _, name := range slices.Sorted(maps.Keys(before)) {
			if a, ok := after[name]; !ok {
				diff = append(diff, "missing "+name)
			} else if !reflect.DeepEqual(before[name], a) {
				diff = append(diff, fmt.Sprintf("changed %s: %+v -> %+v", name, before[name], a))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(after)) {
			if _, ok := before[name]; !ok {
				diff = append(diff, "added "+name)
			}
		}
		return fmt.Errorf("NSG %s changed: %s", nsgID, strings.Join(diff, "; "))
	}
}

// ExpectNSGUnchanged is ExpectUnchanged as a state check, for a step.
func (e *Env) ExpectNSGUnchanged(nsgID string, before Snapshot) statecheck.StateCheck {
	return unchanged{check: e.ExpectUnchanged(nsgID, before)}
}

type unchanged struct{ check func(*terraform.State) error }

func (u unchanged) CheckState(_ context.Context, _ statecheck.CheckStateRequest, resp *statecheck.CheckStateResponse) {
	resp.Error = u.check(nil)
}
