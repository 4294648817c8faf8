package azuresim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// This file serves Azure Virtual Network Manager's effective security admin
// rules of a virtual network (POST .../virtualNetworks/{vnet}/
// listNetworkManagerEffectiveSecurityAdminRules) and keeps them for flow
// verification, which applies them before NSGs (nsgrules.EvaluateWithAdmin).
//
// The local Azure has no network managers, configurations or rule
// collections: a virtual network's effective admin rules are set directly,
// by the seed file, SetAdminRules or PUT /_sim/admin-rules. Rules are kept
// by virtual network id whether or not that network exists, so a seed can
// name a network created later and a flow given by NSG ids can name a
// network with Flow.VirtualNetworkID; the list API answers only for a
// network that exists. Setting rules takes effect at once, as a committed
// admin configuration deployment would, and cuts no established connection
// (see connections.go).

const (
	adminRuleKindCustom = "Custom"
	// localNetworkManager etc. name the parts of a synthesised admin rule id.
	localNetworkManager = "local-network-manager"
	localAdminConfig    = "local-security-admin-configuration"
	localRuleCollection = "local-rule-collection"
	// adminRulesDefaultPage is how many rules a list page holds when the
	// client gives no $top.
	adminRulesDefaultPage = 100
)

// AddressPrefixItem is a source or destination of an admin rule, as Azure
// serialises it: addressPrefixType IPPrefix (a CIDR block, an address or
// "*"), ServiceTag or NetworkGroup (matches no address here).
type AddressPrefixItem struct {
	AddressPrefix     string `json:"addressPrefix"`
	AddressPrefixType string `json:"addressPrefixType"`
}

// AdminRule is one effective security admin rule of a virtual network. Its
// JSON is Azure's EffectiveSecurityAdminRule (kind "Custom"), as the list
// API answers it; a seed may give "name" instead of "id".
type AdminRule struct {
	// ID is the rule's resource id (…/networkManagers/{m}/
	// securityAdminConfigurations/{c}/ruleCollections/{rc}/rules/{name});
	// empty, it is made up from the virtual network's resource group and
	// Name.
	ID string
	// Name is the id's last segment; it may be given alone.
	Name                      string
	ConfigurationDescription  string
	RuleCollectionDescription string
	Description               string
	Access                    string // Allow, Deny or AlwaysAllow
	Priority                  int32  // 1-4096, lowest first
	Direction                 string // Inbound or Outbound
	Protocol                  string // Tcp, Udp, Icmp, Esp, Ah or Any
	// Sources and Destinations: empty means any address.
	Sources, Destinations []AddressPrefixItem
	// SourcePortRanges and DestinationPortRanges: "*", "N" or "N-M";
	// empty means any port.
	SourcePortRanges, DestinationPortRanges []string
}

// adminRuleJSON is Azure's EffectiveSecurityAdminRule.
type adminRuleJSON struct {
	ID                            string         `json:"id,omitempty"`
	Name                          string         `json:"name,omitempty"` // seeds only; never rendered
	Kind                          string         `json:"kind"`
	ConfigurationDescription      string         `json:"configurationDescription,omitempty"`
	RuleCollectionDescription     string         `json:"ruleCollectionDescription,omitempty"`
	RuleCollectionAppliesToGroups []any          `json:"ruleCollectionAppliesToGroups"`
	RuleGroups                    []any          `json:"ruleGroups"`
	Properties                    adminPropsJSON `json:"properties"`
}

// adminPropsJSON is Azure's AdminPropertiesFormat.
type adminPropsJSON struct {
	Description           string              `json:"description,omitempty"`
	Access                string              `json:"access"`
	Priority              int32               `json:"priority"`
	Direction             string              `json:"direction"`
	Protocol              string              `json:"protocol"`
	Sources               []AddressPrefixItem `json:"sources"`
	Destinations          []AddressPrefixItem `json:"destinations"`
	SourcePortRanges      []string            `json:"sourcePortRanges"`
	DestinationPortRanges []string            `json:"destinationPortRanges"`
	ProvisioningState     string              `json:"provisioningState,omitempty"`
	ResourceGUID          string              `json:"resourceGuid,omitempty"`
}

// MarshalJSON renders the rule as the list API does.
func (r AdminRule) MarshalJSON() ([]byte, error) {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	items := func(s []AddressPrefixItem) []AddressPrefixItem {
		if s == nil {
			return []AddressPrefixItem{}
		}
		return s
	}
	name := "" // a rule not yet set has no id: keep its name
	if r.ID == "" {
		name = r.Name
	}
	return json.Marshal(adminRuleJSON{
		ID: r.ID, Name: name, Kind: adminRuleKindCustom,
		ConfigurationDescription: r.ConfigurationDescription, RuleCollectionDescription: r.RuleCollectionDescription,
		RuleCollectionAppliesToGroups: []any{}, RuleGroups: []any{},
		Properties: adminPropsJSON{
			Description: r.Description, Access: r.Access, Priority: r.Priority, Direction: r.Direction, Protocol: r.Protocol,
			Sources: items(r.Sources), Destinations: items(r.Destinations),
			SourcePortRanges: nonNil(r.SourcePortRanges), DestinationPortRanges: nonNil(r.DestinationPortRanges),
			ProvisioningState: statusSucceeded,
		},
	})
}

// UnmarshalJSON reads Azure's shape (and a bare "name"); kind must be
// Custom or absent.
func (r *AdminRule) UnmarshalJSON(b []byte) error {
	var j adminRuleJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Kind != "" && !strings.EqualFold(j.Kind, adminRuleKindCustom) {
		return fmt.Errorf("security admin rule kind %q: only Custom rules are modelled", j.Kind)
	}
	p := j.Properties
	*r = AdminRule{
		ID: j.ID, Name: j.Name, ConfigurationDescription: j.ConfigurationDescription, RuleCollectionDescription: j.RuleCollectionDescription,
		Description: p.Description, Access: p.Access, Priority: p.Priority, Direction: p.Direction, Protocol: p.Protocol,
		Sources: p.Sources, Destinations: p.Destinations, SourcePortRanges: p.SourcePortRanges, DestinationPortRanges: p.DestinationPortRanges,
	}
	if r.Name == "" && r.ID != "" {
		r.Name = r.ID[strings.LastIndexByte(r.ID, '/')+1:]
	}
	return nil
}

// model is the rule in nsgrules' terms.
func (r AdminRule) model() nsgrules.AdminRule {
	conv := func(items []AddressPrefixItem) []nsgrules.AddressPrefix {
		out := make([]nsgrules.AddressPrefix, len(items))
		for i, it := range items {
			out[i] = nsgrules.AddressPrefix{Prefix: it.AddressPrefix, Type: it.AddressPrefixType}
		}
		return out
	}
	return nsgrules.AdminRule{
		Name: r.Name, Priority: r.Priority, Direction: r.Direction, Access: r.Access, Protocol: r.Protocol,
		Sources: conv(r.Sources), Destinations: conv(r.Destinations),
		SourcePorts: r.SourcePortRanges, DestinationPorts: r.DestinationPortRanges,
	}
}

func (r AdminRule) clone() AdminRule {
	c := r
	c.Sources, c.Destinations = slices.Clone(r.Sources), slices.Clone(r.Destinations)
	c.SourcePortRanges, c.DestinationPortRanges = slices.Clone(r.SourcePortRanges), slices.Clone(r.DestinationPortRanges)
	return c
}

// AdminRuleMatch names the admin rule that matched a flow.
type AdminRuleMatch struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Access   string `json:"access"` // Allow, Deny or AlwaysAllow
	Priority int32  `json:"priority"`
}

// errUnknownVNet reports admin rules for something that is not a virtual
// network id of this subscription.
var errUnknownVNet = errors.New("not a virtual network id")

// vnetRuleKey is the key of a virtual network's admin rules: its id's
// resource group and name, case-insensitively.
func (s *Server) vnetRuleKey(vnetID string) (key, sub, rg string, err error) {
	q := parseARMPath(http.MethodGet, vnetID)
	if q.kind != "vnet" || s.servedSubscription(q.sub) == "" {
		return "", "", "", fmt.Errorf("%q is not a virtual network id in a subscription this server serves: %w", vnetID, errUnknownVNet)
	}
	return vnetKey(q.sub, q.rg, q.vnet), s.sub(q.sub), q.rg, nil
}

// SetAdminRules replaces the effective security admin rules of the virtual
// network vnetID (which need not exist yet); nil or empty removes them. Each
// rule must be valid (nsgrules.ValidateAdminRule) and have an id or a name,
// unique in the list. Rules without an id get one in vnetID's resource group.
// The change takes effect at once and cuts no established connection.
func (s *Server) SetAdminRules(vnetID string, rules []AdminRule) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setAdminRules(vnetID, rules)
}

// setAdminRules is SetAdminRules. Callers hold s.mu.
func (s *Server) setAdminRules(vnetID string, rules []AdminRule) error {
	key, sub, rg, err := s.vnetRuleKey(vnetID)
	if err != nil {
		return err
	}
	out := make([]AdminRule, 0, len(rules))
	seen := map[string]bool{}
	for i, r := range rules {
		r = r.clone()
		if r.ID != "" {
			last := r.ID[strings.LastIndexByte(r.ID, '/')+1:]
			if r.Name != "" && !strings.EqualFold(r.Name, last) {
				return fmt.Errorf("security admin rule %d: name %q does not match id %s", i, r.Name, r.ID)
			}
			r.Name = last
		}
		if r.Name == "" {
			return fmt.Errorf("security admin rule %d: no id or name", i)
		}
		if r.ID == "" {
			r.ID = "/subscriptions/" + sub + "/resourceGroups/" + s.groupName(sub, rg) +
				"/providers/Microsoft.Network/networkManagers/" + localNetworkManager +
				"/securityAdminConfigurations/" + localAdminConfig + "/ruleCollections/" + localRuleCollection + "/rules/" + r.Name
		}
		if seen[strings.ToLower(r.ID)] {
			return fmt.Errorf("security admin rule %s appears twice", r.ID)
		}
		seen[strings.ToLower(r.ID)] = true
		if err := nsgrules.ValidateAdminRule(r.model()); err != nil {
			return err
		}
		out = append(out, r)
	}
	if s.adminRules == nil {
		s.adminRules = map[string][]AdminRule{}
	}
	if len(out) == 0 {
		delete(s.adminRules, key)
		return nil
	}
	s.adminRules[key] = out
	return nil
}

// AdminRules returns the effective security admin rules of the virtual
// network vnetID, in the order they were set.
func (s *Server) AdminRules(vnetID string) ([]AdminRule, error) {
	key, _, _, err := s.vnetRuleKey(vnetID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AdminRule, len(s.adminRules[key]))
	for i, r := range s.adminRules[key] {
		out[i] = r.clone()
	}
	return out, nil
}

// adminRulesOf returns the admin rules of the virtual network vnetID and
// their model; none for "" or an id that is not a virtual network's.
// Callers hold s.mu.
func (s *Server) adminRulesOf(vnetID string) ([]AdminRule, []nsgrules.AdminRule) {
	if vnetID == "" {
		return nil, nil
	}
	key, _, _, err := s.vnetRuleKey(vnetID)
	if err != nil {
		return nil, nil
	}
	rules := s.adminRules[key]
	model := make([]nsgrules.AdminRule, len(rules))
	for i, r := range rules {
		model[i] = r.model()
	}
	return rules, model
}

// listEffectiveAdminRules answers ManagementClient.
// ListNetworkManagerEffectiveSecurityAdminRules: POST with a
// QueryRequestOptions body {"skipToken": …}, optional $top, answering
// {"value": [...], "skipToken": …} where a skipToken means more pages.
func (s *Server) listEffectiveAdminRules(w http.ResponseWriter, r *http.Request, q armRequest) {
	var body struct {
		SkipToken *string `json:"skipToken"`
	}
	if r.ContentLength != 0 && !readBody(w, r, &body) {
		return
	}
	page := adminRulesDefaultPage
	if top := r.URL.Query().Get("$top"); top != "" {
		n, err := strconv.Atoi(top)
		if err != nil || n < 1 || n > 1000 {
			writeARMError(w, http.StatusBadRequest, "InvalidTopParameter", fmt.Sprintf("The value '%s' of $top is invalid: want an integer from 1 to 1000.", top))
			return
		}
		page = n
	}
	start := 0
	if body.SkipToken != nil && *body.SkipToken != "" {
		n, err := strconv.Atoi(*body.SkipToken)
		if err != nil || n < 0 {
			writeARMError(w, http.StatusBadRequest, "InvalidSkipToken", fmt.Sprintf("The skipToken '%s' is invalid.", *body.SkipToken))
			return
		}
		start = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := settleNet(s, s.vnets, vnetKey(q.sub, q.rg, q.vnet))
	if e == nil || e.visible() == nil {
		notFoundResource(w, vnetType, q.vnet, q.rg)
		return
	}
	rules := s.adminRules[vnetKey(q.sub, q.rg, q.vnet)]
	if start > len(rules) {
		writeARMError(w, http.StatusBadRequest, "InvalidSkipToken", fmt.Sprintf("The skipToken '%s' is invalid.", *body.SkipToken))
		return
	}
	end := min(start+page, len(rules))
	resp := map[string]any{"value": append([]AdminRule{}, rules[start:end]...)}
	if end < len(rules) {
		resp["skipToken"] = strconv.Itoa(end)
	}
	writeJSON(w, http.StatusOK, resp)
}

// adminRulesControl is the body of PUT /_sim/admin-rules.
type adminRulesControl struct {
	VirtualNetworkID string      `json:"virtualNetworkId"`
	Rules            []AdminRule `json:"rules"`
}

// serveAdminRulesControl answers PUT /_sim/admin-rules (SetAdminRules) and
// GET /_sim/admin-rules?virtualNetworkId=… (AdminRules).
func (s *Server) serveAdminRulesControl(w http.ResponseWriter, r *http.Request) {
	var c adminRulesControl
	switch r.Method {
	case http.MethodGet:
		c.VirtualNetworkID = r.URL.Query().Get("virtualNetworkId")
	case http.MethodPut, http.MethodPost:
		if !readBody(w, r, &c) {
			return
		}
		if err := s.SetAdminRules(c.VirtualNetworkID, c.Rules); err != nil {
			writeARMError(w, http.StatusBadRequest, "InvalidAdminRules", err.Error())
			return
		}
	default:
		w.Header().Set("Allow", "GET, PUT")
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The HTTP method '%s' is not supported for admin rules.", r.Method))
		return
	}
	rules, err := s.AdminRules(c.VirtualNetworkID)
	if err != nil {
		writeARMError(w, http.StatusBadRequest, "InvalidAdminRules", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, adminRulesControl{VirtualNetworkID: c.VirtualNetworkID, Rules: rules})
}
