package provider

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// expectFlush checks the NSG's flushConnection as Azure holds it.
type expectFlush struct {
	env   *acctest.Env
	nsgID string
	want  bool
}

func (e expectFlush) CheckState(ctx context.Context, _ statecheck.CheckStateRequest, resp *statecheck.CheckStateResponse) {
	if err := checkFlush(ctx, e.env, e.nsgID, e.want); err != nil {
		resp.Error = err
	}
}

func checkFlush(ctx context.Context, env *acctest.Env, nsgID string, want bool) error {
	got, err := env.Client().FlushConnection(ctx, nsgID)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("flushConnection on %s is %v, want %v", nsgID, got, want)
	}
	return nil
}

func setFlush(t *testing.T, env *acctest.Env, nsgID string, on bool) {
	t.Helper()
	if _, err := env.Client().ApplyRuleChanges(t.Context(), nsgID, []azure.RuleChange{{FlushConnection: &on}}); err != nil {
		t.Fatal(err)
	}
}

// end_sessions_at_expiry sets flushConnection on the policy's NSGs, shows
// and repairs someone turning it off, and puts back the value it found when
// turned off or destroyed.
func TestAccPolicy_endSessionsAtExpiry(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	on := policyConfig(env, nsgID, []string{"22"}, "  end_sessions_at_expiry = true")
	off := policyConfig(env, nsgID, []string{"22"})
	attr := tfjsonpath.New("end_sessions_at_expiry")

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy: func(*terraform.State) error {
			return checkFlush(context.Background(), env, nsgID, false)
		},
		Steps: []resource.TestStep{
			{
				Config: on,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", attr, knownvalue.Bool(true)),
					expectFlush{env, nsgID, true},
				},
			},
			{
				// Someone turns it off: the plan writes the policy there
				// again, and the setting with it.
				PreConfig: func() { setFlush(t, env, nsgID, false) },
				Config:    on,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("jit_policy.web", plancheck.ResourceActionUpdate)},
				},
				ConfigStateChecks: []statecheck.StateCheck{expectFlush{env, nsgID, true}},
			},
			{
				Config: off,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", attr, knownvalue.Bool(false)),
					expectFlush{env, nsgID, false},
				},
			},
			{
				Config:            on,
				ConfigStateChecks: []statecheck.StateCheck{expectFlush{env, nsgID, true}},
			},
		},
	})
}

// A value found on before the policy is left on when the policy goes.
func TestAccPolicy_endSessionsKeepsAFlushFoundOn(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	setFlush(t, env, nsgID, true)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy: func(*terraform.State) error {
			return checkFlush(context.Background(), env, nsgID, true)
		},
		Steps: []resource.TestStep{{
			Config:            policyConfig(env, nsgID, []string{"22"}, "  end_sessions_at_expiry = true"),
			ConfigStateChecks: []statecheck.StateCheck{expectFlush{env, nsgID, true}},
		}},
	})
}

// The values found are put back only where no other policy still asks.
func TestSessionSettings(t *testing.T) {
	p := jit.Policy{Name: "web", EndSessions: true}
	s := &sessionSettings{found: map[string]bool{}}
	if got := s.keep("NSG-A", p, false, false); got == nil || !*got {
		t.Fatalf("keep on an NSG with flush off = %v, want true", got)
	}
	if got := s.keep("nsg-a", p, true, false); got != nil {
		t.Fatalf("keep again = %v, want nothing to write", *got)
	}
	if got := s.release("nsg-a", true, true); got != nil {
		t.Fatalf("release while another policy asks = %v, want nothing", *got)
	}
	s.keep("nsg-a", p, false, false)
	if got := s.release("nsg-a", true, false); got == nil || *got {
		t.Fatalf("release = %v, want false put back", got)
	}
	if got := s.release("nsg-a", true, false); got != nil {
		t.Fatalf("release of an NSG whose value is not known = %v, want nothing", *got)
	}
}

// A policy sharing an NSG with another is told how far flushConnection
// reaches, either way round.
func TestSessionsDiagnostics(t *testing.T) {
	view := func(endSessions bool) jit.NSGView {
		return jit.NSGView{Policies: map[string]jit.DecodedPolicy{"db": {Policy: jit.Policy{Name: "db", EndSessions: endSessions}}}}
	}
	for _, tc := range []struct {
		mine, theirs bool
		want         string
	}{
		{true, false, "Live Sessions End for the Whole NSG"},
		{false, true, "Live Sessions End at Expiry on This NSG"},
		{false, false, ""},
	} {
		var diags diag.Diagnostics
		sessionsDiagnostics(jit.Policy{Name: "web", EndSessions: tc.mine}, "nsg-a", view(tc.theirs), &diags)
		got := ""
		if len(diags) > 0 {
			got = diags[0].Summary()
		}
		if got != tc.want || len(diags) > 1 {
			t.Errorf("mine %v theirs %v: %v, want %q", tc.mine, tc.theirs, diags, tc.want)
		}
	}
}
