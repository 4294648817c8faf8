package provider

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// badInput is one invalid configuration or API state: the plan or apply
// must fail with one clear error naming what to fix, and the NSG must be
// left exactly as it was.
type badInput struct {
	rules  []*armnetwork.SecurityRule           // the NSG's rules before
	setup  func(env *acctest.Env, nsgID string) // more state (another workspace's policy, grants…)
	config func(env *acctest.Env, nsgID string) string
	want   string // regexp; spaces match any white space (Terraform wraps lines)
}

// policyWith is a jit_policy block with one attribute line replaced or
// added: key = value.
func policyWith(attrs map[string]string) func(*acctest.Env, string) string {
	return func(env *acctest.Env, nsgID string) string {
		lines := map[string]string{
			"name":                            `"web"`,
			"network_security_group_ids":      fmt.Sprintf("[%q]", nsgID),
			"destination_address_prefixes":    `["10.0.1.4"]`,
			"allowed_source_address_prefixes": `["203.0.113.0/24"]`,
			"ports":                           `[{ port = 22, max_duration = "3h" }]`,
		}
		order := []string{"name", "network_security_group_ids", "destination_address_prefixes", "allowed_source_address_prefixes", "ports"}
		for k, v := range attrs {
			if _, known := lines[k]; !known {
				order = append(order, k)
			}
			lines[k] = v
		}
		var b strings.Builder
		b.WriteString(env.ProviderBlock())
		b.WriteString("resource \"jit_policy\" \"web\" {\n")
		for _, k := range order {
			fmt.Fprintf(&b, "  %s = %s\n", k, lines[k])
		}
		b.WriteString("}\n")
		return b.String()
	}
}

// existingPolicy writes policy "web" (band 100-199, port 22 up to 3h, from
// 203.0.113.0/24) as the platform team's workspace would.
func existingPolicy(env *acctest.Env, nsgID string) jit.Policy {
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{vm},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}}})
	if err != nil {
		panic(err)
	}
	env.PutRules(nsgID, p.Rules()...)
	return p
}

// grantWith is a jit_access_grant on the existing policy with attributes
// replaced.
func grantWith(attrs map[string]string) func(*acctest.Env, string) string {
	return func(env *acctest.Env, nsgID string) string {
		lines := map[string]string{
			"policy_id":             fmt.Sprintf("%q", "web@"+nsgID),
			"ports":                 "[22]",
			"source_address_prefix": `"203.0.113.7"`,
			"duration":              `"1h"`,
			"requester":             `"alice@example.com"`,
			"justification":         `"bad input table"`,
		}
		for k, v := range attrs {
			lines[k] = v
		}
		var b strings.Builder
		b.WriteString(env.ProviderBlock())
		b.WriteString("resource \"jit_access_grant\" \"x\" {\n")
		for _, k := range []string{"policy_id", "ports", "source_address_prefix", "duration", "requester", "justification"} {
			fmt.Fprintf(&b, "  %s = %s\n", k, lines[k])
		}
		b.WriteString("}\n")
		return b.String()
	}
}

// providerWith is a provider block with the given arguments and a data
// source that needs the connection.
func providerWith(args func(env *acctest.Env) string) func(*acctest.Env, string) string {
	return func(env *acctest.Env, _ string) string {
		return "provider \"jit\" {\n" + args(env) + "\n}\n\ndata \"jit_client_config\" \"current\" {}\n"
	}
}

func simArgs(env *acctest.Env, skip ...string) string {
	args := map[string]string{
		"metadata_host":   env.Sim.Host(),
		"tenant_id":       env.Sim.TenantID(),
		"client_id":       env.Sim.ClientID(),
		"client_secret":   env.Sim.ClientSecret(),
		"subscription_id": env.Sim.SubscriptionID(),
	}
	var b strings.Builder
	for _, k := range []string{"metadata_host", "tenant_id", "client_id", "client_secret", "subscription_id"} {
		if !contains(skip, k) {
			fmt.Fprintf(&b, "  %s = %q\n", k, args[k])
		}
	}
	b.WriteString("  use_cli = false\n")
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestAccBadInput(t *testing.T) {
	untrusted := httptest.NewTLSServer(http.NotFoundHandler()) // a certificate nobody trusts
	defer untrusted.Close()
	untrustedHost := strings.TrimPrefix(untrusted.URL, "https://")

	manyRules := func(n int) []*armnetwork.SecurityRule {
		var rules []*armnetwork.SecurityRule
		for i := range n {
			rules = append(rules, acctest.AllowRule(fmt.Sprintf("app-%04d", i), int32(300+i), fmt.Sprintf("10.9.%d.%d", i/200, i%200+1), "8080"))
		}
		return rules
	}
	grantRule := func(env *acctest.Env, nsgID string, p jit.Policy, id string, priority int32) {
		g, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.50", Duration: "1h", Requester: "carol@example.com"})
		if err != nil {
			panic(err)
		}
		env.PutRules(nsgID, p.GrantRule(id, g, time.Now().Add(time.Hour), priority))
	}

	tests := map[string]badInput{
		// jit_policy arguments
		"port 0":                           {config: policyWith(map[string]string{"ports": `[{ port = 0, max_duration = "3h" }]`}), want: `ports\[0\]\.port: port 0 is outside the range 1.65535`},
		"port 65536":                       {config: policyWith(map[string]string{"ports": `[{ port = 65536, max_duration = "3h" }]`}), want: `port 65536 is outside the range 1.65535`},
		"port listed twice":                {config: policyWith(map[string]string{"ports": `[{ port = 22, max_duration = "3h" }, { port = 22, max_duration = "1h" }]`}), want: `ports\[1\]\.port: port 22/Tcp is already listed at ports\[0\]`},
		"port twice via *":                 {config: policyWith(map[string]string{"ports": `[{ port = 53, protocol = "Udp", max_duration = "1h" }, { port = 53, protocol = "*", max_duration = "1h" }]`}), want: `overlaps`},
		"protocol Icmp":                    {config: policyWith(map[string]string{"ports": `[{ port = 22, protocol = "Icmp", max_duration = "3h" }]`}), want: `ports\[0\]\.protocol: .*Icmp`},
		"protocol lower case":              {config: policyWith(map[string]string{"ports": `[{ port = 22, protocol = "tcp", max_duration = "3h" }]`}), want: `ports\[0\]\.protocol: .*"Tcp"`},
		"max_duration 4m":                  {config: policyWith(map[string]string{"ports": `[{ port = 22, max_duration = "4m" }]`}), want: `ports\[0\]\.max_duration: .*4m.*5m`},
		"max_duration 25h":                 {config: policyWith(map[string]string{"ports": `[{ port = 22, max_duration = "25h" }]`}), want: `ports\[0\]\.max_duration: .*25h.*24h`},
		"max_duration 0":                   {config: policyWith(map[string]string{"ports": `[{ port = 22, max_duration = "0" }]`}), want: `ports\[0\]\.max_duration: `},
		"max_duration negative":            {config: policyWith(map[string]string{"ports": `[{ port = 22, max_duration = "-1h" }]`}), want: `ports\[0\]\.max_duration: .*-1h`},
		"max_duration 1y":                  {config: policyWith(map[string]string{"ports": `[{ port = 22, max_duration = "1y" }]`}), want: `ports\[0\]\.max_duration: .*"1y"`},
		"band below 100":                   {config: policyWith(map[string]string{"priority_band": `{ start = 50, end = 150 }`}), want: `priority_band: start 50 is outside Azure's priorities 100.4096`},
		"band above 4096":                  {config: policyWith(map[string]string{"priority_band": `{ start = 4000, end = 5000 }`}), want: `priority_band: end 5000 is outside Azure's priorities 100.4096`},
		"band reversed":                    {config: policyWith(map[string]string{"priority_band": `{ start = 300, end = 200 }`}), want: `priority_band: start 300 must be below end 200`},
		"band too small":                   {config: policyWith(map[string]string{"priority_band": `{ start = 100, end = 110 }`}), want: `priority_band: band 100-110 has 11 priorities; a band needs at least 13`},
		"source malformed":                 {config: policyWith(map[string]string{"allowed_source_address_prefixes": `["203.0.113.300"]`}), want: `allowed_source_address_prefixes\[0\]: .*"203\.0\.113\.300" is not an IP address or CIDR`},
		"source host bits":                 {config: policyWith(map[string]string{"allowed_source_address_prefixes": `["203.0.113.7/24"]`}), want: `has host bits set .* "203\.0\.113\.0/24"`},
		"source with a zone":               {config: policyWith(map[string]string{"destination_address_prefixes": `["*"]`, "allowed_source_address_prefixes": `["fe80::1%eth0"]`}), want: `allowed_source_address_prefixes\[0\]: .*zone`},
		"source IPv4-mapped IPv6":          {config: policyWith(map[string]string{"allowed_source_address_prefixes": `["::ffff:203.0.113.0/120"]`}), want: `allowed_source_address_prefixes\[0\]: .*IPv4`},
		"source a service tag":             {config: policyWith(map[string]string{"allowed_source_address_prefixes": `["Internet"]`}), want: `"Internet" is a service tag`},
		"source shadowed":                  {config: policyWith(map[string]string{"allowed_source_address_prefixes": `["203.0.113.0/24", "203.0.113.128/25"]`}), want: `allowed_source_address_prefixes\[1\]: .*203\.0\.113\.128/25`},
		"IPv6 destination, no IPv6 source": {config: policyWith(map[string]string{"destination_address_prefixes": `["2001:db8::4"]`}), want: `no allowed source is IPv6`},
		"destination malformed":            {config: policyWith(map[string]string{"destination_address_prefixes": `["10.0.1"]`}), want: `destination_address_prefixes\[0\]: .*"10\.0\.1"`},
		"name with capitals":               {config: policyWith(map[string]string{"name": `"Web_SSH"`}), want: `name: name "Web_SSH" is invalid`},
		"name too long":                    {config: policyWith(map[string]string{"name": fmt.Sprintf("%q", strings.Repeat("a", 41))}), want: `name: name "a+" is invalid: use 1.40 characters`},
		"NSG id malformed":                 {config: policyWith(map[string]string{"network_security_group_ids": `["nsg-web"]`}), want: `"nsg-web" is not a network security group id`},
		"NSG missing": {config: func(env *acctest.Env, _ string) string {
			return policyWith(map[string]string{"network_security_group_ids": fmt.Sprintf("[%q]", env.NSGID("nsg-gone"))})(env, "")
		}, want: `network security group ".*nsg-gone" does not exist`},
		"band overlaps another workspace's policy": {setup: func(env *acctest.Env, nsgID string) {
			p, _ := jit.NewPolicy(jit.PolicyInput{Name: "db", DestinationPrefixes: []string{"*"}, AllowedSources: []string{"*"},
				BandStart: 150, BandEnd: 249, Ports: []jit.PortInput{{Number: 5432, Protocol: "Tcp", MaxDuration: "1h"}}})
			env.PutRules(nsgID, p.Rules()...)
		}, config: policyWith(nil), want: `band 100-199 of policy "web" overlaps band 150-249 of policy "db"`},
		"a different policy of that name exists": {setup: func(env *acctest.Env, nsgID string) { existingPolicy(env, nsgID) },
			config: policyWith(map[string]string{"ports": `[{ port = 22, max_duration = "1h" }]`}), want: `A JIT policy named "web" is already on .* Import it`},
		"foreign rule in the band": {rules: []*armnetwork.SecurityRule{acctest.AllowRule("LegacyAdmin", 150, "192.0.2.1", "22")},
			config: policyWith(nil), want: `rule "LegacyAdmin" at priority 150 on .* lies inside band 100-199`},
		"NSG at 1000 rules": {rules: manyRules(1000), config: policyWith(nil), want: `over Azure's limit of 1000 per NSG`},
		"bypass with fail_on_bypass": {rules: []*armnetwork.SecurityRule{acctest.AllowRule("AllowSSHFromInternet", 100, "Internet", "22")},
			config: policyWith(map[string]string{"priority_band": `{ start = 200, end = 299 }`, "fail_on_bypass": "true"}),
			want:   `AllowSSHFromInternet \(priority 100\)`},

		// jit_access_grant arguments and the policy behind them
		"grant duration 0":            {setup: setupPolicy, config: grantWith(map[string]string{"duration": `"0s"`}), want: `duration: duration 0s is shorter than the minimum of 1m`},
		"grant duration negative":     {setup: setupPolicy, config: grantWith(map[string]string{"duration": `"-1h"`}), want: `duration: duration -1h is shorter than the minimum of 1m`},
		"grant duration 1y":           {setup: setupPolicy, config: grantWith(map[string]string{"duration": `"1y"`}), want: `duration: duration "1y" is not a duration`},
		"grant over the maximum":      {setup: setupPolicy, config: grantWith(map[string]string{"duration": `"4h"`}), want: `duration: duration 4h exceeds policy "web" maximum of 3h for port 22`},
		"grant source outside":        {setup: setupPolicy, config: grantWith(map[string]string{"source_address_prefix": `"198.51.100.9"`}), want: `source 198\.51\.100\.9 is outside policy "web" allowed sources 203\.0\.113\.0/24`},
		"grant source anywhere":       {setup: setupPolicy, config: grantWith(map[string]string{"source_address_prefix": `"0.0.0.0/0"`}), want: `source "0\.0\.0\.0/0" means anywhere`},
		"grant source IPv6 any":       {setup: setupPolicy, config: grantWith(map[string]string{"source_address_prefix": `"::/0"`}), want: `source "::/0" means anywhere`},
		"grant port not protected":    {setup: setupPolicy, config: grantWith(map[string]string{"ports": "[3389]"}), want: `ports\[0\]: port 3389/Tcp is not protected by policy "web"`},
		"grant policy id malformed":   {setup: setupPolicy, config: grantWith(map[string]string{"policy_id": `"web"`}), want: `"web" is not a JIT policy id`},
		"grant policy not on the NSG": {config: grantWith(nil), want: `Policy "web" is not on .*: no grant can be opened there`},
		"grant on a tampered policy": {setup: func(env *acctest.Env, nsgID string) {
			p := existingPolicy(env, nsgID)
			for _, r := range p.Rules() {
				if strings.HasSuffix(r.Name, "-deny-tcp") {
					// A description that disagrees with the rule's priority.
					r.Description = strings.Replace(r.Description, "band=100-199", "band=100-198", 1)
					env.PutRules(nsgID, r)
				}
			}
		}, config: grantWith(nil), want: `Policy "web" on .* does not read back consistently`},
		"grant into a full band": {setup: func(env *acctest.Env, nsgID string) {
			p, _ := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{vm},
				AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 112,
				Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}}})
			env.PutRules(nsgID, p.Rules()...)
			grantRule(env, nsgID, p, "held", 106)
		}, config: grantWith(nil), want: `The grant range 106.106 of policy "web" \(band 100-112\) on .* is full: .*held by carol@example\.com`},

		// The connection
		"wrong secret": {config: providerWith(func(env *acctest.Env) string {
			return strings.Replace(simArgs(env), env.Sim.ClientSecret(), "not-the-secret", 1)
		}), want: `Unable to Authenticate to Azure`},
		"missing subscription": {config: providerWith(func(env *acctest.Env) string { return simArgs(env, "subscription_id") }),
			want: `subscription_id.*ARM_SUBSCRIPTION_ID`},
		"no credential at all": {config: providerWith(func(env *acctest.Env) string { return simArgs(env, "client_id", "client_secret") }),
			want: `Invalid Provider Configuration`},
		"OIDC without a token": {config: providerWith(func(env *acctest.Env) string {
			return simArgs(env, "client_secret") + "  use_oidc = true\n"
		}), want: `oidc`},
		"unknown environment": {config: providerWith(func(env *acctest.Env) string {
			return simArgs(env, "metadata_host") + "  environment = \"mars\"\n"
		}), want: `environment.*mars`},
		"metadata host unreachable": {config: providerWith(func(env *acctest.Env) string {
			return strings.Replace(simArgs(env), env.Sim.Host(), "127.0.0.1:1", 1)
		}), want: `127\.0\.0\.1:1`},
		"metadata host TLS untrusted": {config: providerWith(func(env *acctest.Env) string {
			return strings.Replace(simArgs(env), env.Sim.Host(), untrustedHost, 1)
		}), want: `SSL_CERT_FILE`},
	}
	if len(tests) < 40 {
		t.Fatalf("the table has %d cases; it is meant to hold at least 40", len(tests))
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			env := acctest.New(t, azuresim.Options{})
			nsgID := env.CreateNSG("nsg-web", tc.rules...)
			if tc.setup != nil {
				tc.setup(env, nsgID)
			}
			before := env.Snapshot(nsgID)
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: providerFactories(noEnv),
				CheckDestroy:             env.ExpectUnchanged(nsgID, before),
				Steps: []resource.TestStep{{
					Config:      tc.config(env, nsgID),
					ExpectError: regexp.MustCompile("(?s)" + strings.ReplaceAll(tc.want, " ", `\s+`)),
				}},
			})
		})
	}
}

func setupPolicy(env *acctest.Env, nsgID string) { existingPolicy(env, nsgID) }
