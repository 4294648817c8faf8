package azuresim

import (
	"encoding/json"
	"fmt"
	"os"
)

// seedFile is the format of Options.SeedFile. Resources are ARM objects
// with their "id", validated as a PUT of each would be, and loaded in the
// order of the fields (so a NIC may name a seeded subnet and NSG, and a VM a
// seeded NIC); all come up Succeeded.
type seedFile struct {
	// Subscriptions are served besides the server's own, as if they were
	// in Options.Subscriptions, so that a seed file can place resources in
	// subscriptions of its own. Every resource's subscription is the one
	// its id names, which must be served.
	Subscriptions         []string          `json:"subscriptions"`
	NetworkSecurityGroups []json.RawMessage `json:"networkSecurityGroups"`
	VirtualNetworks       []json.RawMessage `json:"virtualNetworks"`
	NetworkInterfaces     []json.RawMessage `json:"networkInterfaces"`
	VirtualMachines       []json.RawMessage `json:"virtualMachines"`
	// JITNetworkAccessPolicies are Defender for Cloud JIT policies, with
	// their requests, loaded after the VMs (defender.go).
	JITNetworkAccessPolicies []json.RawMessage `json:"jitNetworkAccessPolicies"`
	// VirtualNetworkAdminRules gives virtual networks effective security
	// admin rules, as SetAdminRules does.
	VirtualNetworkAdminRules []struct {
		VirtualNetworkID string      `json:"virtualNetworkId"`
		Rules            []AdminRule `json:"rules"`
	} `json:"virtualNetworkAdminRules"`
}

// seedHead is what the loader needs of every seeded resource.
type seedHead struct {
	ID string `json:"id"`
}

// loadSeedFile preloads the seed file's resources. Their ids must name a
// served subscription.
func (s *Server) loadSeedFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read seed file: %w", err)
	}
	var seed seedFile
	if err := json.Unmarshal(b, &seed); err != nil {
		return fmt.Errorf("parse seed file %s: %w", path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.addSubscriptions(seed.Subscriptions); err != nil {
		return fmt.Errorf("seed file %s: %w", path, err)
	}
	for i, raw := range seed.NetworkSecurityGroups {
		q, err := s.seedTarget(raw, "nsg", "network security group", i)
		if err != nil {
			return fmt.Errorf("seed file %s: %w", path, err)
		}
		key := nsgKey(q.sub, q.rg, q.nsg)
		if s.nsgs[key] != nil {
			return fmt.Errorf("seed file %s: network security group %s appears twice", path, q.nsg)
		}
		st, aerr := s.newNSGState(q.sub, q.rg, q.nsg, raw, nil)
		if aerr != nil {
			return fmt.Errorf("seed file %s: network security group %s: %w", path, q.nsg, aerr)
		}
		s.nsgs[key] = &nsgEntry{state: st.withProvisioningState(statusSucceeded)}
		s.ensureGroup(st.sub, st.rg, st.location)
	}
	for i, raw := range seed.VirtualNetworks {
		if err := seedNet(s, vnetKind, raw, "vnet", "virtual network", i); err != nil {
			return fmt.Errorf("seed file %s: %w", path, err)
		}
	}
	for i, raw := range seed.NetworkInterfaces {
		if err := seedNet(s, nicKind, raw, "nic", "network interface", i); err != nil {
			return fmt.Errorf("seed file %s: %w", path, err)
		}
	}
	for i, raw := range seed.VirtualMachines {
		q, err := s.seedTarget(raw, "vm", "virtual machine", i)
		if err != nil {
			return fmt.Errorf("seed file %s: %w", path, err)
		}
		if s.vms[vmKey(q.sub, q.rg, q.vm)] != nil {
			return fmt.Errorf("seed file %s: virtual machine %s appears twice", path, q.vm)
		}
		v, aerr := s.newVMState(q.sub, q.rg, q.vm, raw, nil)
		if aerr != nil {
			return fmt.Errorf("seed file %s: virtual machine %s: %w", path, q.vm, aerr)
		}
		if s.vms == nil {
			s.vms = map[string]*vmState{}
		}
		s.vms[vmKey(q.sub, q.rg, q.vm)] = v
		s.ensureGroup(v.sub, v.rg, v.location)
	}
	if err := s.seedJITPolicies(seed.JITNetworkAccessPolicies); err != nil {
		return fmt.Errorf("seed file %s: %w", path, err)
	}
	for _, ar := range seed.VirtualNetworkAdminRules {
		if err := s.setAdminRules(ar.VirtualNetworkID, ar.Rules); err != nil {
			return fmt.Errorf("seed file %s: admin rules of %s: %w", path, ar.VirtualNetworkID, err)
		}
	}
	return nil
}

// seedTarget reads a seeded resource's id, which must be of kind in a
// served subscription.
func (s *Server) seedTarget(raw json.RawMessage, kind, what string, i int) (armRequest, error) {
	var head seedHead
	if err := json.Unmarshal(raw, &head); err != nil {
		return armRequest{}, fmt.Errorf("%s %d: %w", what, i, err)
	}
	q := parseARMPath("PUT", head.ID)
	if q.kind != kind {
		return q, fmt.Errorf("%s %d: id %q is not a %s id", what, i, head.ID, what)
	}
	if s.servedSubscription(q.sub) == "" {
		return q, fmt.Errorf("%s %s is not in a subscription this server serves", what, head.ID)
	}
	return q, nil
}

// seedNet loads one virtual network or network interface. Callers hold s.mu.
func seedNet[T any, P netResource[T]](s *Server, k *netType[T, P], raw json.RawMessage, kind, what string, i int) error {
	q, err := s.seedTarget(raw, kind, what, i)
	if err != nil {
		return err
	}
	key := k.key(q.sub, q.rg, k.name(q))
	if k.entries(s)[key] != nil {
		return fmt.Errorf("%s %s appears twice", what, k.name(q))
	}
	st, aerr := k.build(s, q.sub, q.rg, k.name(q), raw, nil)
	if aerr != nil {
		return fmt.Errorf("%s %s: %w", what, k.name(q), aerr)
	}
	P(st).withProvisioningState(statusSucceeded)
	k.entries(s)[key] = &resourceEntry[T]{state: st}
	s.ensureGroup(P(st).meta().sub, P(st).meta().rg, P(st).meta().location)
	return nil
}
