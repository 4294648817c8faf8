package azure

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
)

// This file is the least of Network Watcher's IP flow verify that jitd
// migrate defender --check needs. A fuller flow verification for jitd
// verify may live beside it (watcher.go); this one is named so as not to
// collide with it.

// MigrationFlow is one inbound flow to verify: from Source to a VM's NIC
// address and port.
type MigrationFlow struct {
	VMID, NICID     string
	Protocol        string // "TCP" or "UDP"
	Source, Address string
	Port            uint16
}

// MigrationFlowVerdict is Network Watcher's answer.
type MigrationFlowVerdict struct {
	Allowed bool
	Rule    string // e.g. "securityRules/SecurityCenter-JITRule_…"
}

// VerifyMigrationFlow asks the Network Watcher of the VM's region
// (NetworkWatcherRG/NetworkWatcher_<region>, the one Azure creates by
// itself) whether the flow is allowed.
func (c *Client) VerifyMigrationFlow(ctx context.Context, f MigrationFlow) (MigrationFlowVerdict, error) {
	const op = "verify IP flow"
	vm, err := c.getVM(ctx, f.VMID)
	if err != nil {
		return MigrationFlowVerdict{}, err
	}
	sub := strings.Split(strings.TrimPrefix(f.VMID, "/subscriptions/"), "/")[0]
	watchers, err := armnetwork.NewWatchersClient(sub, c.cred, c.armOptions)
	if err != nil {
		return MigrationFlowVerdict{}, &Error{Kind: KindInvalid, Op: "prepare", Message: err.Error(), Err: err}
	}
	region := strings.ToLower(strings.ReplaceAll(vm.Location, " ", ""))
	proto := armnetwork.IPFlowProtocolTCP
	if strings.EqualFold(f.Protocol, "UDP") {
		proto = armnetwork.IPFlowProtocolUDP
	}
	poller, err := watchers.BeginVerifyIPFlow(ctx, "NetworkWatcherRG", "NetworkWatcher_"+region, armnetwork.VerificationIPFlowParameters{
		TargetResourceID: ptr(f.VMID), TargetNicResourceID: ptr(f.NICID), Direction: ptr(armnetwork.DirectionInbound), Protocol: ptr(proto),
		LocalIPAddress: ptr(f.Address), LocalPort: ptr(strconv.Itoa(int(f.Port))), RemoteIPAddress: ptr(f.Source), RemotePort: ptr("49152"),
	}, nil)
	if err != nil {
		return MigrationFlowVerdict{}, newError(op, f.VMID, err)
	}
	resp, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: c.pollFrequency})
	if err != nil {
		return MigrationFlowVerdict{}, newError(op, f.VMID, err)
	}
	if resp.Access == nil {
		return MigrationFlowVerdict{}, &Error{Kind: KindInvalid, Op: op, ResourceID: f.VMID, Message: fmt.Sprintf("Network Watcher gave no access verdict for %s", f.Source)}
	}
	return MigrationFlowVerdict{Allowed: *resp.Access == armnetwork.AccessAllow, Rule: deref(resp.RuleName)}, nil
}
