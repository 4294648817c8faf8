package azure

import (
	"context"
	"errors"
	"net/netip"
	"strings"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

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

// VerifyMigrationFlow asks IP flow verify, through the network watcher of
// the VM's region (found as jitd verify finds it: see Verifier), whether
// the flow is allowed.
func (c *Client) VerifyMigrationFlow(ctx context.Context, f MigrationFlow) (MigrationFlowVerdict, error) {
	const op = "verify IP flow"
	region, err := c.vmRegion(ctx, f.VMID)
	if err != nil {
		return MigrationFlowVerdict{}, err
	}
	local, err1 := netip.ParseAddr(f.Address)
	remote, err2 := netip.ParseAddr(f.Source)
	if err := errors.Join(err1, err2); err != nil {
		return MigrationFlowVerdict{}, &Error{Kind: KindInvalid, Op: op, ResourceID: f.VMID, Message: err.Error(), Err: err}
	}
	proto := jit.ProtocolTCP
	if strings.EqualFold(f.Protocol, "UDP") {
		proto = jit.ProtocolUDP
	}
	c.mu.Lock()
	if c.verifier == nil {
		c.verifier = NewVerifier(c)
	}
	v := c.verifier
	c.mu.Unlock()
	got, err := v.VerifyIPFlow(ctx, jit.Probe{VMID: f.VMID, NICID: f.NICID, Region: region,
		Local: local, Remote: remote, Port: f.Port, Protocol: proto})
	if err != nil {
		return MigrationFlowVerdict{}, err
	}
	return MigrationFlowVerdict{Allowed: got.Access == jit.Allow, Rule: got.RuleName}, nil
}

// vmRegion is the region of a VM, read once per VM for the client's life:
// a migration check asks several flows of each VM.
func (c *Client) vmRegion(ctx context.Context, vmID string) (string, error) {
	key := strings.ToLower(vmID)
	c.mu.Lock()
	region, ok := c.vmRegions[key]
	c.mu.Unlock()
	if ok {
		return region, nil
	}
	vm, err := c.getVM(ctx, vmID)
	if err != nil {
		return "", err
	}
	region = normaliseRegion(vm.Location)
	c.mu.Lock()
	if c.vmRegions == nil {
		c.vmRegions = map[string]string{}
	}
	c.vmRegions[key] = region
	c.mu.Unlock()
	return region, nil
}
