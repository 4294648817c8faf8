package testproc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
)

// ARMClients are the armnetwork clients another tool (the portal, azurerm,
// a script) would use against the local Azure run as a process: the test
// acts as that other writer through them.
type ARMClients struct {
	Groups *armnetwork.SecurityGroupsClient
	Rules  *armnetwork.SecurityRulesClient
	// Client is this project's own Azure client, for reading rules in the
	// domain form.
	Client *azure.Client
	// HTTP talks to the local Azure's /_sim endpoints.
	HTTP *http.Client
	URL  string
}

// NewARMClients builds the clients for the azuresim process a. It sets
// SSL_CERT_FILE in this process to a's CA first: Go reads it once, before
// the first TLS connection, so call this before any other HTTPS client of
// the test process connects.
func NewARMClients(ctx context.Context, a *Azuresim) (*ARMClients, error) {
	if err := os.Setenv("SSL_CERT_FILE", a.Env["SSL_CERT_FILE"]); err != nil {
		return nil, err
	}
	getenv := func(k string) string {
		if v, ok := a.Env[k]; ok {
			return v
		}
		if k == "ARM_USE_CLI" {
			return "false"
		}
		return ""
	}
	cfg, err := azure.ConfigFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	c := &ARMClients{HTTP: &http.Client{Timeout: 30 * time.Second}, URL: a.URL}
	if c.Client, err = azure.NewClient(ctx, cfg, azure.ClientOptions{PollFrequency: 100 * time.Millisecond}); err != nil {
		return nil, err
	}
	cl := c.Client.Cloud()
	opts := policy.ClientOptions{Cloud: cloud.Configuration{
		ActiveDirectoryAuthorityHost: cl.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: cl.ResourceManagerEndpoint, Audience: cl.ResourceManagerAudience},
		},
	}}
	cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		return nil, err
	}
	factory, err := armnetwork.NewClientFactory(cfg.SubscriptionID, cred, &arm.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, err
	}
	c.Groups, c.Rules = factory.NewSecurityGroupsClient(), factory.NewSecurityRulesClient()
	return c, nil
}

// FlowVerdict is the local Azure's answer to a flow verification. When a
// security admin rule decided, DecidedBy is "adminRule", NSGID is empty and
// RuleName is "admin:<name>".
type FlowVerdict struct {
	Allowed   bool   `json:"allowed"`
	NSGID     string `json:"nsgId"`
	RuleName  string `json:"ruleName"`
	Priority  int32  `json:"priority"`
	DecidedBy string `json:"decidedBy"` // "adminRule", "networkSecurityGroup" or ""
	// AdminRule is the admin rule that matched, deciding or not.
	AdminRule *struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Access   string `json:"access"`
		Priority int32  `json:"priority"`
	} `json:"adminRule"`
}

// SetAdminRules replaces the effective security admin rules of the virtual
// network vnetID (PUT /_sim/admin-rules). Each rule is Azure's
// EffectiveSecurityAdminRule JSON (a "name" may stand in for the "id");
// none removes them.
func (c *ARMClients) SetAdminRules(vnetID string, rules ...json.RawMessage) error {
	if rules == nil {
		rules = []json.RawMessage{}
	}
	body, err := json.Marshal(map[string]any{"virtualNetworkId": vnetID, "rules": rules})
	if err != nil {
		return err
	}
	var out json.RawMessage
	if err := c.simJSON(http.MethodPut, "/_sim/admin-rules", body, &out, http.StatusOK); err != nil {
		return fmt.Errorf("set admin rules of %s: %w", vnetID, err)
	}
	return nil
}

// VerifyFlow asks the local Azure (POST /_sim/flow/verify) whether src may
// reach dst:port over protocol through the NSGs nsgIDs, in order.
func (c *ARMClients) VerifyFlow(nsgIDs []string, protocol, src, dst string, port int) (FlowVerdict, error) {
	return c.VerifyFlowIn("", nsgIDs, protocol, src, dst, port)
}

// VerifyFlowIn is VerifyFlow with the security admin rules of the virtual
// network vnetID ("" none) evaluated before the NSGs.
func (c *ARMClients) VerifyFlowIn(vnetID string, nsgIDs []string, protocol, src, dst string, port int) (FlowVerdict, error) {
	body, _ := json.Marshal(map[string]any{"nsgIds": nsgIDs, "virtualNetworkId": vnetID, "protocol": protocol, "source": src,
		"destination": dst, "destinationPort": port})
	resp, err := c.HTTP.Post(c.URL+"/_sim/flow/verify", "application/json", bytes.NewReader(body))
	if err != nil {
		return FlowVerdict{}, fmt.Errorf("flow verify: %w", err)
	}
	defer resp.Body.Close()
	var v FlowVerdict
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return v, fmt.Errorf("flow verify: %d %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("flow verify: %w", err)
	}
	return v, nil
}

// FlowConnection is the local Azure's answer to EstablishFlow: the
// connection's id when it was established, and the flow's verdict then.
type FlowConnection struct {
	ID          string      `json:"id"`
	Established bool        `json:"established"`
	Verdict     FlowVerdict `json:"verdict"`
}

// ConnectionState is what became of an established connection: alive, or
// cut at CutAt by the rule RuleName (Priority) of NSG NSGID, when a write to
// an NSG on its path with flushConnection on completed.
type ConnectionState struct {
	ID            string    `json:"id"`
	NSGIDs        []string  `json:"nsgIds"`
	EstablishedAt time.Time `json:"establishedAt"`
	Alive         bool      `json:"alive"`
	CutAt         time.Time `json:"cutAt"`
	NSGID         string    `json:"nsgId"`
	RuleName      string    `json:"ruleName"`
	Priority      int32     `json:"priority"`
}

// EstablishFlow opens a connection from src to dst:port over protocol
// through the NSGs nsgIDs, in order (POST /_sim/flow/establish), if the
// local Azure allows the flow now. A connection outlives the rule that
// admitted it unless an NSG on its path has flushConnection on.
func (c *ARMClients) EstablishFlow(nsgIDs []string, protocol, src, dst string, port int) (FlowConnection, error) {
	body, _ := json.Marshal(map[string]any{"nsgIds": nsgIDs, "protocol": protocol, "source": src,
		"destination": dst, "destinationPort": port})
	var conn FlowConnection
	err := c.simJSON(http.MethodPost, "/_sim/flow/establish", body, &conn, http.StatusCreated, http.StatusOK)
	if err != nil {
		return conn, fmt.Errorf("establish flow: %w", err)
	}
	return conn, nil
}

// ConnectionState asks the local Azure (GET /_sim/flow/connections/{id})
// whether the connection id is still alive.
func (c *ARMClients) ConnectionState(id string) (ConnectionState, error) {
	var st ConnectionState
	if err := c.simJSON(http.MethodGet, "/_sim/flow/connections/"+url.PathEscape(id), nil, &st, http.StatusOK); err != nil {
		return st, fmt.Errorf("connection %s: %w", id, err)
	}
	return st, nil
}

// simJSON sends body to the local Azure's endpoint path and decodes an
// answer with one of the statuses ok into out.
func (c *ARMClients) simJSON(method, path string, body []byte, out any, ok ...int) error {
	req, err := http.NewRequest(method, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !slices.Contains(ok, resp.StatusCode) {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// SetSimConfig changes the local Azure's write latency and fault rate
// (PUT /_sim/config).
func (c *ARMClients) SetSimConfig(writeLatency time.Duration, faultRate float64) error {
	body, _ := json.Marshal(map[string]any{"writeLatency": writeLatency.String(), "faultRate": faultRate})
	req, err := http.NewRequest(http.MethodPut, c.URL+"/_sim/config", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("sim config: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("sim config: %d %s", resp.StatusCode, b)
	}
	return nil
}
