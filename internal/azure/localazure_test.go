package azure

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// TestMain points SSL_CERT_FILE at the local Azure's CA before anything in
// this process loads the system roots, which Go does only once.
func TestMain(m *testing.M) {
	if simtest.CAFile() == "" {
		fmt.Fprintln(os.Stderr, "could not create the local Azure CA")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// localAzure starts a local Azure holding one empty NSG and returns it, the
// NSG's id and the azurerm-style environment that points at it.
func localAzure(t *testing.T, opts azuresim.Options) (*azuresim.Server, string, map[string]string) {
	t.Helper()
	// The subscription id is fixed by the server's defaults unless set.
	sub := opts.SubscriptionID
	if sub == "" {
		sub = azuresim.DefaultSubscriptionID
	}
	nsgID := "/subscriptions/" + sub + "/resourceGroups/rg-jit/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
	seed := filepath.Join(t.TempDir(), "seed.json")
	body := fmt.Sprintf(`{"networkSecurityGroups":[{"id":%q,"location":"westeurope","properties":{"securityRules":[]}}]}`, nsgID)
	if err := os.WriteFile(seed, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opts.SeedFile = seed
	srv := simtest.Start(t, opts)
	return srv, nsgID, srv.Environ(simtest.CAFile())
}

// clientFromEnv builds a Client the way the provider and the daemon do:
// from the environment, through ConfigFromEnv.
func clientFromEnv(t *testing.T, env map[string]string) *Client {
	t.Helper()
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	c, err := NewClient(context.Background(), cfg, ClientOptions{
		UserAgent:     "terraform-provider-jit/test",
		PollFrequency: 10 * time.Millisecond,
		RetryDelay:    10 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func sshFrom(source string) azuresim.Flow {
	return azuresim.Flow{Protocol: "Tcp", Source: source, Destination: "10.0.0.4", DestinationPort: 22}
}

func TestLocalAzureRuleLifecycle(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: 50 * time.Millisecond})
	c := clientFromEnv(t, env)
	ctx := context.Background()

	id, err := c.Identity(ctx)
	if err != nil {
		t.Fatalf("Identity: %v", err)
	}
	if !strings.EqualFold(id.TenantID, srv.TenantID()) || !strings.EqualFold(id.ClientID, srv.ClientID()) || id.ObjectID == "" {
		t.Errorf("Identity = %+v, want tenant %s and client %s", id, srv.TenantID(), srv.ClientID())
	}
	if c.Cloud().ResourceManagerEndpoint == "" || !c.Cloud().Custom {
		t.Errorf("cloud %+v was not discovered from the metadata host", c.Cloud())
	}

	flow := sshFrom("203.0.113.7")
	flow.NSGIDs = []string{nsgID}
	if v, err := srv.VerifyFlow(flow); err != nil || v.Allowed {
		t.Fatalf("before the grant: %+v, %v; want denied", v, err)
	}

	srv.ResetCounters()
	put, err := c.PutRule(ctx, nsgID, sshGrant)
	if err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	if put.Name != sshGrant.Name || put.Priority != sshGrant.Priority || put.Description != sshGrant.Description {
		t.Errorf("PutRule returned %+v", put)
	}
	if n := srv.Counters().Requests["GET operation"]; n == 0 {
		t.Errorf("PutRule did not poll the operation (counters %v)", srv.Counters().Requests)
	}
	// PutRule returned, so the rule must be in force.
	if v, err := srv.VerifyFlow(flow); err != nil || !v.Allowed || v.RuleName != sshGrant.Name {
		t.Errorf("after PutRule: %+v, %v; want allowed by %s", v, err, sshGrant.Name)
	}

	got, err := c.GetRule(ctx, nsgID, sshGrant.Name)
	if err != nil || got.Name != sshGrant.Name || got.DestinationPorts[0] != "22" || got.SourcePrefixes[0] != "203.0.113.7/32" {
		t.Errorf("GetRule = %+v, %v", got, err)
	}
	rules, err := c.ListRules(ctx, nsgID)
	if err != nil || len(rules) != 1 {
		t.Errorf("ListRules = %+v, %v; want the one rule", rules, err)
	}
	nsg, err := c.GetNSG(ctx, nsgID)
	if err != nil || len(nsg.Rules) != 1 || len(nsg.DefaultRules) == 0 || nsg.Etag == "" || nsg.Location != "westeurope" {
		t.Errorf("GetNSG = %+v, %v", nsg, err)
	}

	if err := c.DeleteRule(ctx, nsgID, sshGrant.Name); err != nil {
		t.Fatalf("DeleteRule: %v", err)
	}
	if v, err := srv.VerifyFlow(flow); err != nil || v.Allowed {
		t.Errorf("after DeleteRule: %+v, %v; want denied", v, err)
	}
	if _, err := c.GetRule(ctx, nsgID, sshGrant.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRule after delete: %v, want ErrNotFound", err)
	}
	if err := c.DeleteRule(ctx, nsgID, sshGrant.Name); err != nil {
		t.Errorf("deleting a deleted rule: %v, want success", err)
	}
}

func TestLocalAzureValidationErrors(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{})
	c := clientFromEnv(t, env)
	ctx := context.Background()
	if _, err := c.PutRule(ctx, nsgID, sshGrant); err != nil {
		t.Fatalf("PutRule: %v", err)
	}

	samePriority := sshGrant
	samePriority.Name = "jit-web-g-2"
	mixedFamilies := sshGrant
	mixedFamilies.Name, mixedFamilies.Priority = "jit-web-g-3", 160
	mixedFamilies.SourcePrefixes = []string{"203.0.113.7/32", "2001:db8::1/128"}
	tests := []struct {
		rule jit.SecurityRule
		kind error
		code string
	}{
		{samePriority, ErrConflict, "SecurityRuleConflict"},
		{mixedFamilies, ErrInvalid, "ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies"},
	}
	for _, tt := range tests {
		_, err := c.PutRule(ctx, nsgID, tt.rule)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, tt.kind) || e.Code != tt.code || e.Message == "" {
			t.Errorf("%s: got %v (%+v), want %v with code %s", tt.rule.Name, err, e, tt.kind, tt.code)
		}
	}
}

func TestLocalAzureConcurrentWritesFromTwoClients(t *testing.T) {
	// busy 0 is today's ARM, which queues the writes (no busy answer); 429
	// and 409 are the refusals of the older ARM, which the client retries.
	for _, busy := range []int{0, 429, 409} {
		t.Run(fmt.Sprint(busy), func(t *testing.T) {
			mode := azuresim.BusyRefuse
			if busy == 0 {
				mode = azuresim.BusyQueue
			}
			srv, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: 20 * time.Millisecond, BusyStatus: busy, BusyMode: mode})
			// Two clients, as two processes would be: neither's per-NSG
			// lock protects the other, so Azure's busy answers are certain.
			clients := []*Client{clientFromEnv(t, env), clientFromEnv(t, env)}
			const n = 20
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					r := sshGrant
					r.Name = fmt.Sprintf("jit-web-g-%02d", i)
					r.Priority = int32(200 + i)
					_, errs[i] = clients[i%2].PutRule(context.Background(), nsgID, r)
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("PutRule %d: %v", i, err)
				}
			}
			rules, err := clients[0].ListRules(context.Background(), nsgID)
			if err != nil || len(rules) != n {
				t.Errorf("ListRules: %d rules, %v; want %d", len(rules), err, n)
			}
			switch c := srv.Counters(); {
			case mode == azuresim.BusyRefuse && c.Busy == 0:
				t.Error("the NSG was never busy: the test did not exercise the retries")
			case mode == azuresim.BusyQueue && (c.Queued == 0 || c.Busy != 0):
				t.Errorf("%d writes queued, %d refused: want some queued, none refused", c.Queued, c.Busy)
			}
		})
	}
}

func TestLocalAzureOIDC(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	token, err := srv.IssueFederatedToken("repo:jitaccess/infra:ref:refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ghURL, ghToken := srv.GitHubIDTokenRequest()

	tests := map[string]map[string]string{
		"token file":     {"ARM_OIDC_TOKEN_FILE_PATH": tokenFile},
		"token":          {"ARM_OIDC_TOKEN": token},
		"GitHub Actions": {"ACTIONS_ID_TOKEN_REQUEST_URL": ghURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": ghToken},
	}
	for name, extra := range tests {
		t.Run(name, func(t *testing.T) {
			e := map[string]string{"ARM_USE_OIDC": "true", "ARM_USE_CLI": "false"}
			for k, v := range env {
				if k != "ARM_CLIENT_SECRET" {
					e[k] = v
				}
			}
			for k, v := range extra {
				e[k] = v
			}
			c := clientFromEnv(t, e)
			id, err := c.Identity(context.Background())
			if err != nil || !strings.EqualFold(id.ClientID, srv.ClientID()) {
				t.Fatalf("Identity = %+v, %v", id, err)
			}
			if _, err := c.ListRules(context.Background(), nsgID); err != nil {
				t.Errorf("ListRules: %v", err)
			}
		})
	}
}

func TestLocalAzureWrongSecret(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{})
	const wrong = "not-the-secret-8c1f"
	env["ARM_CLIENT_SECRET"] = wrong
	c := clientFromEnv(t, env)
	_, err := c.ListRules(context.Background(), nsgID)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("ListRules with a wrong secret: %v, want ErrUnauthorized", err)
	}
	t.Log(err)
	if strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), env["ARM_CLIENT_ID"]) {
		t.Errorf("message %q leaks the secret or does not name the client", err)
	}
}

func TestLocalAzureUntrustedCertificate(t *testing.T) {
	// A server with a CA of its own, which SSL_CERT_FILE does not hold.
	srv, err := azuresim.Start(azuresim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	env := srv.Environ(filepath.Join(t.TempDir(), "unused.pem"))
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(context.Background(), cfg, ClientOptions{})
	if err == nil {
		t.Fatal("NewClient trusted an unknown CA")
	}
	t.Log(err)
	for _, want := range []string{srv.Host(), "ARM_METADATA_HOSTNAME", "not trusted", "SSL_CERT_FILE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
