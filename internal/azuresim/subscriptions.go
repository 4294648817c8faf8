package azuresim

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
)

// This file holds the subscriptions a local Azure serves. There is always
// the default one (Options.SubscriptionID); Options.Subscriptions adds
// others, so that clients that work across a tenant (jitd's discovery) meet
// many. Every resource lives in one subscription: its store key starts with
// the subscription id, its id names it, and lists and resource groups are
// per subscription, as on ARM.

// extraSubscriptionNamespace makes ExtraSubscriptionIDs' ids: name-based
// UUIDs in a namespace of the local Azure's own.
var extraSubscriptionNamespace = uuid.MustParse("6f1c3a52-9e0d-4b7a-8c21-5d4e3f2a1b90")

// ExtraSubscriptionIDs returns n deterministic subscription ids, the same
// for every run, for Options.Subscriptions: a seed file written for them
// names the same subscriptions the next time.
func ExtraSubscriptionIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = uuid.NewSHA1(extraSubscriptionNamespace, fmt.Appendf(nil, "subscription-%d", i+1)).String()
	}
	return out
}

// setSubscriptions records the served subscriptions: the default one, then
// extra. Ids must be non-empty, hold no '/' and appear once.
func (s *Server) setSubscriptions(extra []string) error {
	s.subscriptions = make([]string, 0, 1+len(extra))
	s.subscriptionIDs = make(map[string]string, 1+len(extra))
	if err := s.addSubscriptions([]string{s.subscriptionID}); err != nil {
		return err
	}
	return s.addSubscriptions(extra)
}

// addSubscriptions serves more subscriptions. Ids must be non-empty, hold
// no '/' and not be served already.
func (s *Server) addSubscriptions(ids []string) error {
	for _, id := range ids {
		switch {
		case id == "":
			return errors.New("subscription id: must not be empty")
		case strings.ContainsAny(id, "/?# "):
			return fmt.Errorf("subscription id %q: must not hold '/', '?', '#' or spaces", id)
		case s.subscriptionIDs[strings.ToLower(id)] != "":
			return fmt.Errorf("subscription id %q: appears twice", id)
		}
		s.subscriptions = append(s.subscriptions, id)
		s.subscriptionIDs[strings.ToLower(id)] = id
	}
	return nil
}

// servedSubscription returns the canonical spelling of a served
// subscription id, or "" when the server does not serve it.
func (s *Server) servedSubscription(id string) string {
	return s.subscriptionIDs[strings.ToLower(id)]
}

// sub is the canonical spelling of a subscription id the request routing
// accepted (serveARM answered SubscriptionNotFound for any other).
func (s *Server) sub(id string) string {
	if c := s.servedSubscription(id); c != "" {
		return c
	}
	return id
}

// subscriptionOf returns the subscription segment of an ARM id
// ("/subscriptions/{sub}/..."), or "" when id names none.
func subscriptionOf(id string) string {
	rest, ok := cutPrefixFold(id, "/subscriptions/")
	if !ok {
		return ""
	}
	sub, _, _ := strings.Cut(rest, "/")
	return sub
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// inSubscription reports whether the resource id lies in subscription sub.
func inSubscription(id, sub string) bool { return strings.EqualFold(subscriptionOf(id), sub) }

// scopeKey is the case-insensitive identity of a resource group in its
// subscription; store keys of resources extend it with their name.
func scopeKey(sub, rg string) string { return strings.ToLower(sub) + "/" + strings.ToLower(rg) }

// resourceID builds a resource group scoped id: /subscriptions/{sub}/
// resourceGroups/{rg}/providers/{provider}/{name}, provider being
// "Namespace/type".
func resourceID(sub, rg, provider, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/" + provider + "/" + name
}

// listSubscriptions answers GET /subscriptions, paged as ARM pages it.
func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	s.writeList(w, r, func() ([]any, bool) {
		items := make([]any, len(s.subscriptions))
		for i := range s.subscriptions {
			items[i] = s.subscriptionDocAt(i)
		}
		return items, true
	})
}

// subscriptionDoc renders the served subscription id.
func (s *Server) subscriptionDoc(id string) map[string]any {
	for i, sub := range s.subscriptions {
		if strings.EqualFold(sub, id) {
			return s.subscriptionDocAt(i)
		}
	}
	return s.subscriptionDocAt(0)
}

// subscriptionDocAt renders the i-th served subscription. The default one
// is "Local Azure"; the others are numbered in the order they were given.
func (s *Server) subscriptionDocAt(i int) map[string]any {
	id, name := s.subscriptions[i], "Local Azure"
	if i > 0 {
		name = fmt.Sprintf("Local Azure %d", i+1)
	}
	return map[string]any{
		"id":             "/subscriptions/" + id,
		"subscriptionId": id,
		"tenantId":       s.tenantID,
		"displayName":    name,
		"state":          "Enabled",
		"subscriptionPolicies": map[string]any{
			"locationPlacementId": "Public_2014-09-01",
			"quotaId":             "PayAsYouGo_2014-09-01",
			"spendingLimit":       "Off",
		},
		"authorizationSource": "RoleBased",
	}
}
