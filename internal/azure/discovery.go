package azure

import (
	"context"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
)

// ListNSGIDs returns the ids of the network security groups of a
// subscription, or of one of its resource groups when resourceGroup is not
// empty, following every page. It is how jitd turns a scope into NSGs.
func (c *Client) ListNSGIDs(ctx context.Context, subscriptionID, resourceGroup string) ([]string, error) {
	const op = "list network security groups in"
	scope := "/subscriptions/" + subscriptionID
	if resourceGroup != "" {
		scope += "/resourceGroups/" + resourceGroup
	}
	if strings.TrimSpace(subscriptionID) == "" || strings.ContainsAny(subscriptionID+resourceGroup, "/?#") {
		return nil, &Error{Kind: KindInvalid, Op: op, ResourceID: scope, Message: "want a subscription id and an optional resource group name"}
	}
	sc, err := c.subscription(subscriptionID)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Op: op, ResourceID: scope, Message: err.Error(), Err: err}
	}
	var ids []string
	collect := func(groups []*armnetwork.SecurityGroup) {
		for _, g := range groups {
			if g != nil && g.ID != nil {
				ids = append(ids, *g.ID)
			}
		}
	}
	if resourceGroup == "" {
		pager := sc.groups.NewListAllPager(nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, newError(op, scope, err)
			}
			collect(page.Value)
		}
		return ids, nil
	}
	pager := sc.groups.NewListPager(resourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, newError(op, scope, err)
		}
		collect(page.Value)
	}
	return ids, nil
}
