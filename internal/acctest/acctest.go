// Package acctest holds the fixtures the acceptance tests share: a local
// Azure per test, network security groups created through the real Azure SDK,
// the provider block that points the provider at that local Azure, and
// reachability questions answered by its flow verification.
package acctest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// ResourceGroup is the resource group the fixtures create NSGs in.
const ResourceGroup = "rg-jit-acctest"

// pollFrequency is the fallback between status polls; the local Azure sends
// Retry-After, which the SDK follows instead.
const pollFrequency = 100 * time.Millisecond

// Env is one test's local Azure and an SDK client acting on it as an
// administrator would (outside Terraform).
type Env struct {
	t   testing.TB
	Sim *azuresim.Server

	nsgs  *armnetwork.SecurityGroupsClient
	rules *armnetwork.SecurityRulesClient
	vnets *armnetwork.VirtualNetworksClient
	nics  *armnetwork.InterfacesClient

	// client is the project's own Azure client on this local Azure, built
	// once (it discovers the endpoints from the metadata host).
	clientOnce sync.Once
	client     *azure.Client
	clientErr  error
}

// New starts a local Azure for t and closes it when t ends.
func New(t testing.TB, opts azuresim.Options) *Env {
	t.Helper()
	sim := simtest.Start(t, opts)

	cred, err := azidentity.NewClientSecretCredential(sim.TenantID(), sim.ClientID(), sim.ClientSecret(),
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions:            policy.ClientOptions{Cloud: simCloud(sim)},
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		t.Fatalf("credential for the local Azure: %v", err)
	}
	factory, err := armnetwork.NewClientFactory(sim.SubscriptionID(), cred, &arm.ClientOptions{
		ClientOptions: policy.ClientOptions{Cloud: simCloud(sim)},
	})
	if err != nil {
		t.Fatalf("armnetwork client for the local Azure: %v", err)
	}
	return &Env{
		t:     t,
		Sim:   sim,
		nsgs:  factory.NewSecurityGroupsClient(),
		rules: factory.NewSecurityRulesClient(),
		vnets: factory.NewVirtualNetworksClient(),
		nics:  factory.NewInterfacesClient(),
	}
}

func simCloud(sim *azuresim.Server) cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: sim.URL() + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: sim.URL(), Audience: sim.URL()},
		},
	}
}

// ProviderBlock is a provider "jit" block configured for the local Azure with
// explicit arguments, so tests never depend on the ARM_* variables of the
// machine running them. extra is inserted verbatim (more arguments).
func (e *Env) ProviderBlock(extra ...string) string {
	return fmt.Sprintf(`
provider "jit" {
  metadata_host   = %q
  tenant_id       = %q
  client_id       = %q
  client_secret   = %q
  subscription_id = %q
  use_cli         = false
%s
}
`, e.Sim.Host(), e.Sim.TenantID(), e.Sim.ClientID(), e.Sim.ClientSecret(), e.Sim.SubscriptionID(),
		strings.Join(extra, "\n"))
}

// NSGID is the id of the named NSG in the fixtures' resource group.
func (e *Env) NSGID(name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkSecurityGroups/%s",
		e.Sim.SubscriptionID(), ResourceGroup, name)
}

// CreateNSG creates an NSG with the given rules, as an administrator would
// before onboarding it, and returns its id.
func (e *Env) CreateNSG(name string, rules ...*armnetwork.SecurityRule) string {
	e.t.Helper()
	ctx := context.Background()
	poller, err := e.nsgs.BeginCreateOrUpdate(ctx, ResourceGroup, name, armnetwork.SecurityGroup{
		Location:   to("westeurope"),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: rules},
	}, nil)
	if err != nil {
		e.t.Fatalf("create NSG %s: %v", name, err)
	}
	if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: pollFrequency}); err != nil {
		e.t.Fatalf("create NSG %s: %v", name, err)
	}
	return e.NSGID(name)
}

// Rules returns the NSG's rules as Azure holds them now, keyed by name.
func (e *Env) Rules(nsgName string) map[string]*armnetwork.SecurityRule {
	e.t.Helper()
	out := map[string]*armnetwork.SecurityRule{}
	pager := e.rules.NewListPager(ResourceGroup, nsgName, nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			e.t.Fatalf("list rules of %s: %v", nsgName, err)
		}
		for _, r := range page.Value {
			out[*r.Name] = r
		}
	}
	return out
}

// Reachable asks the local Azure's flow verification whether src can open a
// connection to dst:port over proto (Tcp, Udp) through the NSGs, in order.
func (e *Env) Reachable(nsgIDs []string, src, dst string, port int, proto string) bool {
	e.t.Helper()
	v, err := e.Sim.VerifyFlow(azuresim.Flow{
		NSGIDs:          nsgIDs,
		Protocol:        proto,
		Source:          src,
		Destination:     dst,
		DestinationPort: port,
	})
	if err != nil {
		e.t.Fatalf("flow verification %s -> %s:%d/%s: %v", src, dst, port, proto, err)
	}
	return v.Allowed
}

// AllowRule is an inbound allow rule, the shape of the pre-existing rules a
// platform team finds on NSGs ("Allow 22 from Internet").
func AllowRule(name string, priority int32, source, port string) *armnetwork.SecurityRule {
	return &armnetwork.SecurityRule{
		Name: to(name),
		Properties: &armnetwork.SecurityRulePropertiesFormat{
			Priority:                 to(priority),
			Direction:                to(armnetwork.SecurityRuleDirectionInbound),
			Access:                   to(armnetwork.SecurityRuleAccessAllow),
			Protocol:                 to(armnetwork.SecurityRuleProtocolTCP),
			SourceAddressPrefix:      to(source),
			SourcePortRange:          to("*"),
			DestinationAddressPrefix: to("*"),
			DestinationPortRange:     to(port),
		},
	}
}

func to[T any](v T) *T { return &v }
