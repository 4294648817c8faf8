package azure

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph"
	"github.com/google/uuid"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// ClientOptions tune a Client. The zero value is right for production.
type ClientOptions struct {
	UserAgent string // e.g. "terraform-provider-jit/1.2.3"
	// PollFrequency is how often a long-running write is polled when Azure
	// gives no Retry-After (which wins when it does). Default 1s, the
	// least azcore allows outside tests.
	PollFrequency time.Duration
	// MaxRetries bounds retries of throttled (429), busy-NSG (409/429) and
	// server-error (5xx) answers and of connection failures. Default 8.
	MaxRetries int
	// RetryDelay is the first backoff delay when Azure gives no
	// Retry-After; it doubles on each retry. Default 1s.
	RetryDelay time.Duration
	// MaxRetryDelay caps the backoff; a Retry-After longer than it is not
	// waited for. Default 60s.
	MaxRetryDelay time.Duration
	Transport     policy.Transporter     // nil: default (tests may pass an armnetwork fake transport)
	Credential    azcore.TokenCredential // nil: built from Config
	Cloud         *Cloud                 // nil: ResolveCloud
}

const (
	defaultPollFrequency = time.Second
	defaultMaxRetries    = 8
	defaultRetryDelay    = time.Second
	defaultMaxRetryDelay = 60 * time.Second
)

// Client reads and writes network security group rules. It is safe for
// concurrent use; writes through one Client to one NSG are serialised.
type Client struct {
	subscriptionID string
	cloud          Cloud
	cred           azcore.TokenCredential
	armOptions     *arm.ClientOptions
	pollFrequency  time.Duration

	mu       sync.Mutex
	clients  map[string]*subscriptionClients // by lower-cased subscription id
	locks    map[string]chan struct{}        // by lower-cased NSG id
	batchers map[string]*batcher             // by lower-cased NSG id
	// gatherBatches makes the first change to an idle NSG wait for others
	// (see minGather); on by default.
	gatherBatches bool
	raw           *arm.Client       // for whole-NSG reads and writes as raw JSON
	verifier      *Verifier         // IP flow verify for VerifyMigrationFlow, made on first use
	vmRegions     map[string]string // by lower-cased VM id, for VerifyMigrationFlow
	// Azure Resource Graph (resourcegraph.go): the client, made on first
	// use, the caller's quota as last reported, the quota's clock, $top.
	graphClient *armresourcegraph.Client
	graphQuota  graphQuota
	graphClock  graphClock
	graphPage   int
}

// subscriptionClients are the armnetwork clients of one subscription:
// armnetwork binds a client to a subscription, and ids may name any.
type subscriptionClients struct {
	rules      *armnetwork.SecurityRulesClient
	groups     *armnetwork.SecurityGroupsClient
	interfaces *armnetwork.InterfacesClient
	subnets    *armnetwork.SubnetsClient
	management *armnetwork.ManagementClient
}

// NewClient validates c, resolves the cloud and builds the credential
// (unless o supplies them). It makes no request other than endpoint
// discovery for a metadata host; call Identity to check the credentials.
func NewClient(ctx context.Context, c Config, o ClientOptions) (*Client, error) {
	if err := c.validate(o.Credential == nil); err != nil {
		return nil, fmt.Errorf("invalid Azure configuration: %w", err)
	}
	var cl Cloud
	if o.Cloud != nil {
		cl = *o.Cloud
	} else {
		var err error
		if cl, err = ResolveCloud(ctx, c, nil); err != nil {
			return nil, err
		}
	}
	cred := o.Credential
	if cred == nil {
		var err error
		if cred, err = newCredential(c, cl); err != nil {
			return nil, err
		}
	} else {
		cred = &classifiedCredential{inner: cred, clientID: c.ClientID, tenantID: c.TenantID}
	}

	if o.PollFrequency <= 0 {
		o.PollFrequency = defaultPollFrequency
	}
	// azcore refuses a poll frequency under a second outside tests; clamp
	// rather than fail a write that Azure has already accepted.
	if o.PollFrequency < time.Second && flag.Lookup("test.v") == nil {
		o.PollFrequency = time.Second
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = defaultMaxRetries
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = defaultRetryDelay
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = defaultMaxRetryDelay
	}
	bo := backoff{base: o.RetryDelay, max: o.MaxRetryDelay}
	armOpts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cl.configuration(),
		Retry: policy.RetryOptions{
			MaxRetries:    int32(o.MaxRetries),
			RetryDelay:    o.RetryDelay,
			MaxRetryDelay: o.MaxRetryDelay,
			ShouldRetry:   shouldRetry,
		},
		Transport:       o.Transport,
		PerCallPolicies: []policy.Policy{correlationPolicy{id: uuid.NewString()}, userAgentPolicy(o.UserAgent), writeIDsPolicy{}},
		PerRetryPolicies: []policy.Policy{&busyRetryPolicy{
			maxRetries: o.MaxRetries, backoff: bo, wait: waitContext,
		}},
	}}
	return &Client{
		subscriptionID: c.SubscriptionID,
		cloud:          cl,
		cred:           cred,
		armOptions:     armOpts,
		pollFrequency:  o.PollFrequency,
		clients:        map[string]*subscriptionClients{},
		locks:          map[string]chan struct{}{},
		gatherBatches:  true,
	}, nil
}

// userAgentPolicy puts the product's user agent in front of azcore's
// telemetry (which is capped at 24 characters as an application id), so
// Azure's activity log names the tool that made each change.
type userAgentPolicy string

func (ua userAgentPolicy) Do(req *policy.Request) (*http.Response, error) {
	if ua != "" {
		h := req.Raw().Header
		if cur := h.Get("User-Agent"); cur != "" {
			h.Set("User-Agent", string(ua)+" "+cur)
		} else {
			h.Set("User-Agent", string(ua))
		}
	}
	return req.Next()
}

// SubscriptionID returns the configured subscription.
func (c *Client) SubscriptionID() string { return c.subscriptionID }

// Cloud returns the cloud the client talks to.
func (c *Client) Cloud() Cloud { return c.cloud }

// Identity is who the client's token says it is.
type Identity struct {
	TenantID string
	ObjectID string
	ClientID string
}

// Identity acquires a token for Azure Resource Manager and returns its
// tenant, object and application ids. The token is not verified: it comes
// straight from Entra ID to us, and this only reports who we are (for audit
// records and early credential checks).
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	const op = "acquire a token for Azure Resource Manager"
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{
		Scopes: []string{c.cloud.ResourceManagerAudience + "/.default"},
	})
	if err != nil {
		return Identity{}, newError(op, "", err)
	}
	id, err := identityFromToken(tok.Token)
	if err != nil {
		return Identity{}, &Error{Kind: KindUnauthorized, Op: op, Message: err.Error()}
	}
	return id, nil
}

// identityFromToken decodes a JWT's payload for its identity claims.
func identityFromToken(token string) (Identity, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Identity{}, errors.New("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Identity{}, fmt.Errorf("decoding the access token payload: %w", err)
	}
	var claims struct {
		TenantID string `json:"tid"`
		ObjectID string `json:"oid"`
		AppID    string `json:"appid"` // v1 tokens, which ARM receives
		AZP      string `json:"azp"`   // v2 tokens
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Identity{}, fmt.Errorf("decoding the access token claims: %w", err)
	}
	id := Identity{TenantID: claims.TenantID, ObjectID: claims.ObjectID, ClientID: claims.AppID}
	if id.ClientID == "" {
		id.ClientID = claims.AZP
	}
	return id, nil
}

// NSG is a network security group and its rules.
type NSG struct {
	ID       string
	Name     string
	Location string
	Etag     string
	Rules    []jit.SecurityRule
	// FlushConnection is Azure's flushConnection property: established
	// flows are re-evaluated whenever the NSG's rules change.
	FlushConnection bool
	// DefaultRules are Azure's fixed rules at priorities 65000-65500
	// (AllowVnetInBound, ..., DenyAllInBound), which decide every flow the
	// custom rules do not.
	DefaultRules []jit.SecurityRule
}

// subscription returns the cached armnetwork clients of a subscription.
func (c *Client) subscription(id string) (*subscriptionClients, error) {
	key := strings.ToLower(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if sc, ok := c.clients[key]; ok {
		return sc, nil
	}
	rules, err := armnetwork.NewSecurityRulesClient(id, c.cred, c.armOptions)
	if err != nil {
		return nil, fmt.Errorf("creating the security rules client for subscription %s: %w", id, err)
	}
	groups, err := armnetwork.NewSecurityGroupsClient(id, c.cred, c.armOptions)
	if err != nil {
		return nil, fmt.Errorf("creating the security groups client for subscription %s: %w", id, err)
	}
	interfaces, err := armnetwork.NewInterfacesClient(id, c.cred, c.armOptions)
	if err != nil {
		return nil, fmt.Errorf("creating the network interfaces client for subscription %s: %w", id, err)
	}
	subnets, err := armnetwork.NewSubnetsClient(id, c.cred, c.armOptions)
	if err != nil {
		return nil, fmt.Errorf("creating the subnets client for subscription %s: %w", id, err)
	}
	management, err := armnetwork.NewManagementClient(id, c.cred, c.armOptions)
	if err != nil {
		return nil, fmt.Errorf("creating the network management client for subscription %s: %w", id, err)
	}
	sc := &subscriptionClients{rules: rules, groups: groups, interfaces: interfaces, subnets: subnets, management: management}
	c.clients[key] = sc
	return sc, nil
}

// target parses an NSG id and returns it with its subscription's clients.
func (c *Client) target(nsgID string) (NSGID, *subscriptionClients, error) {
	id, err := ParseNSGID(nsgID)
	if err != nil {
		return NSGID{}, nil, err
	}
	sc, err := c.subscription(id.SubscriptionID)
	if err != nil {
		return NSGID{}, nil, &Error{Kind: KindInvalid, ResourceID: nsgID, Op: "prepare", Message: err.Error(), Err: err}
	}
	return id, sc, nil
}

// lockNSG serialises writes to one NSG within this Client: Azure accepts
// one write per NSG at a time and answers the rest with busy errors, so
// queueing here saves retries. It gives up when ctx ends.
func (c *Client) lockNSG(ctx context.Context, id NSGID) (unlock func(), err error) {
	key := strings.ToLower(id.String())
	c.mu.Lock()
	ch, ok := c.locks[key]
	if !ok {
		ch = make(chan struct{}, 1)
		c.locks[key] = ch
	}
	c.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// GetNSG reads a network security group with its rules.
func (c *Client) GetNSG(ctx context.Context, nsgID string) (NSG, error) {
	const op = "get network security group"
	id, sc, err := c.target(nsgID)
	if err != nil {
		return NSG{}, err
	}
	resp, err := sc.groups.Get(ctx, id.ResourceGroup, id.Name, nil)
	if err != nil {
		return NSG{}, newError(op, nsgID, err)
	}
	g := resp.SecurityGroup
	out := NSG{ID: deref(g.ID), Name: deref(g.Name), Location: deref(g.Location), Etag: deref(g.Etag)}
	if g.Properties != nil {
		out.Rules = rulesFromARM(g.Properties.SecurityRules)
		out.FlushConnection = deref(g.Properties.FlushConnection)
		out.DefaultRules = rulesFromARM(g.Properties.DefaultSecurityRules)
	}
	return out, nil
}

// FlushConnection reads an NSG's flushConnection property: whether Azure
// re-evaluates established flows when the NSG's rules change.
func (c *Client) FlushConnection(ctx context.Context, nsgID string) (bool, error) {
	nsg, err := c.GetNSG(ctx, nsgID)
	return nsg.FlushConnection, err
}

// ListRules returns an NSG's custom rules (not its default rules).
func (c *Client) ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error) {
	const op = "list security rules of"
	id, sc, err := c.target(nsgID)
	if err != nil {
		return nil, err
	}
	var out []jit.SecurityRule
	pager := sc.rules.NewListPager(id.ResourceGroup, id.Name, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, newError(op, nsgID, err)
		}
		out = append(out, rulesFromARM(page.Value)...)
	}
	return out, nil
}

// GetRule reads one rule.
func (c *Client) GetRule(ctx context.Context, nsgID, name string) (jit.SecurityRule, error) {
	const op = "get security rule"
	id, sc, err := c.target(nsgID)
	if err != nil {
		return jit.SecurityRule{}, err
	}
	resp, err := sc.rules.Get(ctx, id.ResourceGroup, id.Name, name, nil)
	if err != nil {
		return jit.SecurityRule{}, newError(op, id.ruleID(name), err)
	}
	return ruleFromARM(&resp.SecurityRule), nil
}

// PutRule creates or replaces a rule and waits until Azure has applied it,
// returning the rule as Azure stored it.
func (c *Client) PutRule(ctx context.Context, nsgID string, r jit.SecurityRule) (jit.SecurityRule, error) {
	const op = "put security rule"
	id, sc, err := c.target(nsgID)
	if err != nil {
		return jit.SecurityRule{}, err
	}
	ruleID := id.ruleID(r.Name)
	switch {
	case r.Name == "":
		return jit.SecurityRule{}, &Error{Kind: KindInvalid, Op: op, ResourceID: nsgID, Message: "the rule has no name"}
	case r.UsesApplicationSecurityGroups:
		// The jit type keeps only that a rule uses application security
		// groups, not which: writing it back would drop them.
		return jit.SecurityRule{}, &Error{Kind: KindInvalid, Op: op, ResourceID: ruleID,
			Message: "rules with application security groups cannot be written"}
	}
	unlock, err := c.lockNSG(ctx, id)
	if err != nil {
		return jit.SecurityRule{}, newError(op, ruleID, err)
	}
	defer unlock()
	poller, err := sc.rules.BeginCreateOrUpdate(ctx, id.ResourceGroup, id.Name, r.Name, ruleToARM(r), nil)
	if err != nil {
		return jit.SecurityRule{}, newError(op, ruleID, err)
	}
	resp, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: c.pollFrequency})
	if err != nil {
		return jit.SecurityRule{}, newError(op, ruleID, err)
	}
	return ruleFromARM(&resp.SecurityRule), nil
}

// DeleteRule deletes a rule and waits until Azure has removed it. A rule
// (or NSG) that does not exist is success: deleting is idempotent, and two
// daemon replicas may race to close the same grant.
func (c *Client) DeleteRule(ctx context.Context, nsgID, name string) error {
	const op = "delete security rule"
	id, sc, err := c.target(nsgID)
	if err != nil {
		return err
	}
	ruleID := id.ruleID(name)
	if name == "" {
		return &Error{Kind: KindInvalid, Op: op, ResourceID: nsgID, Message: "no rule name"}
	}
	unlock, err := c.lockNSG(ctx, id)
	if err != nil {
		return newError(op, ruleID, err)
	}
	defer unlock()
	poller, err := sc.rules.BeginDelete(ctx, id.ResourceGroup, id.Name, name, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: c.pollFrequency})
	}
	if err = newError(op, ruleID, err); errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
