package azure

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Network Watcher's IP flow verify answers "would this packet reach this
// VM?" through every layer Azure applies (security admin rules, the
// subnet's NSG, the NIC's NSG), naming the rule that decides. It is asked
// of the network watcher of the VM's region (Azure enables one per region
// and subscription, by default NetworkWatcher_<region> in the resource
// group NetworkWatcherRG, but it may have any name), about a VM, so the
// way from an NSG to a question is: the NSG's network interfaces and
// subnets, each subnet's network interfaces, each NIC's VM (the NIC's
// read-only virtualMachine reference), the watcher of the NIC's region.
//
// Permissions: Microsoft.Network/networkSecurityGroups/read,
// virtualNetworks/subnets/read, networkInterfaces/read,
// networkWatchers/read and networkWatchers/ipFlowVerify/action, and
// Microsoft.Compute/virtualMachines/read on the VMs (Azure checks it for
// the target of IP flow verify).

// IPFlowVerdict is IP flow verify's answer.
type IPFlowVerdict struct {
	Access jit.Access
	// RuleName is the rule that decided, as Azure names it (for example
	// "securityRules/jit-web-deny-tcp", "defaultSecurityRules/DenyAllInBound");
	// "" when Azure names none.
	RuleName string
	// Watcher is the id of the network watcher asked.
	Watcher string
}

// Verifier asks Network Watcher's IP flow verify about the VMs behind
// NSGs. It remembers each subscription's watchers (listed again when a
// region has none, at most once a minute). Safe for concurrent use.
type Verifier struct {
	c *Client

	listMu   sync.Mutex // held while listing, so that concurrent first questions list once
	mu       sync.Mutex
	clients  map[string]*armnetwork.WatchersClient // by lower-case subscription id
	watchers map[string]watcherList                // by lower-case subscription id
}

type watcherList struct {
	byRegion map[string]watcherRef // by normalised region
	listedAt time.Time
}

type watcherRef struct {
	id, resourceGroup, name, state string
}

// watcherRelist is how soon a subscription's watchers are listed again
// when the one of a region is missing.
const watcherRelist = time.Minute

// NewVerifier returns a Verifier reading and asking through c.
func NewVerifier(c *Client) *Verifier {
	return &Verifier{c: c, clients: map[string]*armnetwork.WatchersClient{}, watchers: map[string]watcherList{}}
}

// Targets returns the VM network interfaces an NSG filters, each with the
// private addresses whose traffic passes it: every address of a NIC the
// NSG is associated with, and for a subnet it is associated with, the
// addresses of the NICs' IP configurations in that subnet. Network
// interfaces that no VM has cannot be asked about (IP flow verify targets
// a VM); they are returned in unverifiable, as are subnet members that are
// not network interfaces (private endpoints, gateways).
func (v *Verifier) Targets(ctx context.Context, nsgID string) (targets []jit.VerifyTarget, unverifiable []string, err error) {
	const op = "get network security group"
	id, sc, err := v.c.target(nsgID)
	if err != nil {
		return nil, nil, err
	}
	resp, err := sc.groups.Get(ctx, id.ResourceGroup, id.Name, nil)
	if err != nil {
		return nil, nil, newError(op, nsgID, err)
	}
	// Which IP configurations of which NIC: "" for all of them.
	want := map[string]map[string]bool{} // by NIC id: lower-case subnet ids, or {"": true}
	var order []string
	add := func(nicID, subnet string) {
		key := strings.ToLower(nicID)
		if want[key] == nil {
			want[key] = map[string]bool{}
			order = append(order, nicID)
		}
		want[key][strings.ToLower(subnet)] = true
	}
	if p := resp.Properties; p != nil {
		for _, n := range p.NetworkInterfaces {
			if n != nil && n.ID != nil {
				add(*n.ID, "")
			}
		}
		for _, s := range p.Subnets {
			if s == nil || s.ID == nil {
				continue
			}
			members, err := v.subnetMembers(ctx, *s.ID)
			if err != nil {
				return nil, nil, err
			}
			for _, m := range members {
				if nic, ok := nicOfIPConfiguration(m); ok {
					add(nic, *s.ID)
				} else {
					unverifiable = append(unverifiable, m)
				}
			}
		}
	}
	for _, nicID := range order {
		t, ok, err := v.nicTarget(ctx, nicID, want[strings.ToLower(nicID)])
		switch {
		case err != nil:
			return nil, nil, err
		case !ok:
			unverifiable = append(unverifiable, nicID)
		case len(t.Addresses) > 0:
			targets = append(targets, t)
		}
	}
	slices.SortFunc(targets, func(a, b jit.VerifyTarget) int {
		return strings.Compare(strings.ToLower(a.NICID), strings.ToLower(b.NICID))
	})
	slices.Sort(unverifiable)
	return targets, slices.Compact(unverifiable), nil
}

// subnetMembers returns the ids of the IP configurations in a subnet.
func (v *Verifier) subnetMembers(ctx context.Context, id string) ([]string, error) {
	const op = "get subnet"
	sid, err := parseSubnetID(id)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Op: op, ResourceID: id, Message: err.Error(), Err: err}
	}
	sc, err := v.c.subscription(sid.subscriptionID)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, ResourceID: id, Op: "prepare", Message: err.Error(), Err: err}
	}
	resp, err := sc.subnets.Get(ctx, sid.resourceGroup, sid.vnet, sid.name, nil)
	if err != nil {
		return nil, newError(op, id, err)
	}
	var out []string
	if p := resp.Properties; p != nil {
		for _, ic := range p.IPConfigurations {
			if ic != nil && ic.ID != nil {
				out = append(out, *ic.ID)
			}
		}
	}
	return out, nil
}

// nicOfIPConfiguration returns the network interface of an IP
// configuration id, when it is one of a network interface.
func nicOfIPConfiguration(id string) (string, bool) {
	i := strings.Index(strings.ToLower(id), "/ipconfigurations/")
	if i <= 0 {
		return "", false
	}
	if _, err := ParseNetworkInterfaceID(id[:i]); err != nil {
		return "", false
	}
	return id[:i], true
}

// nicTarget reads a network interface: its VM, region and the addresses
// of the IP configurations in subnets (all when subnets holds "").
// ok is false when no VM has the NIC.
func (v *Verifier) nicTarget(ctx context.Context, nicID string, subnets map[string]bool) (jit.VerifyTarget, bool, error) {
	const op = "get network interface"
	id, err := ParseNetworkInterfaceID(nicID)
	if err != nil {
		return jit.VerifyTarget{}, false, err
	}
	sc, err := v.c.subscription(id.SubscriptionID)
	if err != nil {
		return jit.VerifyTarget{}, false, &Error{Kind: KindInvalid, ResourceID: nicID, Op: "prepare", Message: err.Error(), Err: err}
	}
	resp, err := sc.interfaces.Get(ctx, id.ResourceGroup, id.Name, nil)
	if err != nil {
		return jit.VerifyTarget{}, false, newError(op, nicID, err)
	}
	p := resp.Properties
	if p == nil || p.VirtualMachine == nil || deref(p.VirtualMachine.ID) == "" {
		return jit.VerifyTarget{}, false, nil
	}
	t := jit.VerifyTarget{VMID: *p.VirtualMachine.ID, NICID: deref(resp.ID), Region: normaliseRegion(deref(resp.Location))}
	if t.NICID == "" {
		t.NICID = id.String()
	}
	for _, ic := range p.IPConfigurations {
		if ic == nil || ic.Properties == nil {
			continue
		}
		subnet := ""
		if ic.Properties.Subnet != nil {
			subnet = strings.ToLower(deref(ic.Properties.Subnet.ID))
		}
		if !subnets[""] && !subnets[subnet] {
			continue
		}
		if a, err := netip.ParseAddr(deref(ic.Properties.PrivateIPAddress)); err == nil {
			t.Addresses = append(t.Addresses, a.Unmap())
		}
	}
	return t, true, nil
}

// normaliseRegion writes a region as ARM's location names do: "West
// Europe" and "westeurope" are the same region.
func normaliseRegion(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, " ", ""))
}

// watchersClient returns the cached watchers client of a subscription.
func (v *Verifier) watchersClient(sub string) (*armnetwork.WatchersClient, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, ok := v.clients[strings.ToLower(sub)]; ok {
		return c, nil
	}
	c, err := armnetwork.NewWatchersClient(sub, v.c.cred, v.c.armOptions)
	if err != nil {
		return nil, fmt.Errorf("creating the network watchers client for subscription %s: %w", sub, err)
	}
	v.clients[strings.ToLower(sub)] = c
	return c, nil
}

// Watcher returns the network watcher of a subscription's region, listing
// the subscription's watchers (any name, any resource group) when they
// are not known or the region had none at the last listing.
func (v *Verifier) Watcher(ctx context.Context, sub, region string) (id string, err error) {
	region = normaliseRegion(region)
	key := strings.ToLower(sub)
	known := func() (watcherList, bool) {
		v.mu.Lock()
		defer v.mu.Unlock()
		l, ok := v.watchers[key]
		return l, ok
	}
	list, _ := known()
	w, found := list.byRegion[region]
	if !found {
		v.listMu.Lock()
		// Another question may have listed while this one waited.
		if l, ok := known(); ok && time.Since(l.listedAt) < watcherRelist {
			list = l
		} else {
			list, err = v.listWatchers(ctx, sub)
		}
		v.listMu.Unlock()
		if err != nil {
			return "", err
		}
		w, found = list.byRegion[region]
	}
	switch {
	case !found:
		return "", &Error{Kind: KindNotFound, Op: "find the network watcher of", ResourceID: "/subscriptions/" + sub,
			Message: fmt.Sprintf("subscription %s has no network watcher in region %s: enable Network Watcher there "+
				"(Azure's default is NetworkWatcher_%s in resource group NetworkWatcherRG)", sub, region, region)}
	case !strings.EqualFold(w.state, "Succeeded"):
		return "", &Error{Kind: KindUnavailable, Op: "use network watcher", ResourceID: w.id,
			Message: fmt.Sprintf("network watcher %s is %s, not Succeeded", w.id, w.state)}
	}
	return w.id, nil
}

func (v *Verifier) listWatchers(ctx context.Context, sub string) (watcherList, error) {
	const op = "list network watchers of"
	c, err := v.watchersClient(sub)
	if err != nil {
		return watcherList{}, &Error{Kind: KindInvalid, ResourceID: "/subscriptions/" + sub, Op: "prepare", Message: err.Error(), Err: err}
	}
	list := watcherList{byRegion: map[string]watcherRef{}, listedAt: time.Now()}
	pager := c.NewListAllPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return watcherList{}, newError(op, "/subscriptions/"+sub, err)
		}
		for _, w := range page.Value {
			if w == nil || w.ID == nil || w.Location == nil {
				continue
			}
			rid, err := arm.ParseResourceID(*w.ID)
			if err != nil {
				continue
			}
			ref := watcherRef{id: *w.ID, resourceGroup: rid.ResourceGroupName, name: rid.Name}
			if w.Properties != nil && w.Properties.ProvisioningState != nil {
				ref.state = string(*w.Properties.ProvisioningState)
			}
			region := normaliseRegion(*w.Location)
			// One watcher per region and subscription; should a listing
			// ever hold two, the first by id is used, deterministically.
			if cur, dup := list.byRegion[region]; !dup || strings.ToLower(ref.id) < strings.ToLower(cur.id) {
				list.byRegion[region] = ref
			}
		}
	}
	v.mu.Lock()
	v.watchers[strings.ToLower(sub)] = list
	v.mu.Unlock()
	return list, nil
}

// VerifyIPFlow asks the network watcher of the probe's region whether the
// probe's inbound flow reaches the VM, and waits for the answer (a
// long-running operation).
func (v *Verifier) VerifyIPFlow(ctx context.Context, p jit.Probe) (IPFlowVerdict, error) {
	const op = "verify IP flow to"
	rid, err := arm.ParseResourceID(p.VMID)
	if err != nil {
		return IPFlowVerdict{}, &Error{Kind: KindInvalid, Op: op, ResourceID: p.VMID, Message: err.Error(), Err: err}
	}
	watcherID, err := v.Watcher(ctx, rid.SubscriptionID, p.Region)
	if err != nil {
		return IPFlowVerdict{}, err
	}
	wid, err := arm.ParseResourceID(watcherID)
	if err != nil {
		return IPFlowVerdict{}, &Error{Kind: KindInvalid, Op: op, ResourceID: watcherID, Message: err.Error(), Err: err}
	}
	c, err := v.watchersClient(wid.SubscriptionID)
	if err != nil {
		return IPFlowVerdict{}, &Error{Kind: KindInvalid, ResourceID: watcherID, Op: "prepare", Message: err.Error(), Err: err}
	}
	proto := armnetwork.IPFlowProtocolTCP
	if p.Protocol == jit.ProtocolUDP {
		proto = armnetwork.IPFlowProtocolUDP
	}
	params := armnetwork.VerificationIPFlowParameters{
		TargetResourceID:    &p.VMID,
		TargetNicResourceID: &p.NICID,
		Direction:           ptr(armnetwork.DirectionInbound),
		Protocol:            &proto,
		LocalIPAddress:      ptr(p.Local.String()),
		LocalPort:           ptr(strconv.Itoa(int(p.Port))),
		RemoteIPAddress:     ptr(p.Remote.String()),
		RemotePort:          ptr(strconv.Itoa(jit.ProbeRemotePort)),
	}
	poller, err := c.BeginVerifyIPFlow(ctx, wid.ResourceGroupName, wid.Name, params, nil)
	if err != nil {
		return IPFlowVerdict{}, newError(op, p.VMID, err)
	}
	resp, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: v.c.pollFrequency})
	if err != nil {
		return IPFlowVerdict{}, newError(op, p.VMID, err)
	}
	out := IPFlowVerdict{RuleName: deref(resp.RuleName), Watcher: watcherID}
	switch {
	case resp.Access == nil:
		return IPFlowVerdict{}, &Error{Kind: KindInvalid, Op: op, ResourceID: p.VMID, Message: "IP flow verify answered no access"}
	case strings.EqualFold(string(*resp.Access), string(jit.Allow)):
		out.Access = jit.Allow
	case strings.EqualFold(string(*resp.Access), string(jit.Deny)):
		out.Access = jit.Deny
	default:
		return IPFlowVerdict{}, &Error{Kind: KindInvalid, Op: op, ResourceID: p.VMID,
			Message: fmt.Sprintf("IP flow verify answered access %q", *resp.Access)}
	}
	return out, nil
}
