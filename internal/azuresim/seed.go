package azuresim

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// seedFile is the format of Options.SeedFile.
type seedFile struct {
	NetworkSecurityGroups []json.RawMessage `json:"networkSecurityGroups"`
}

// loadSeedFile preloads NSGs, validated as a PUT of each would be. Their ids
// must name this server's subscription.
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
	for i, raw := range seed.NetworkSecurityGroups {
		var head struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return fmt.Errorf("seed file %s: network security group %d: %w", path, i, err)
		}
		q := parseARMPath("PUT", head.ID)
		if q.kind != "nsg" {
			return fmt.Errorf("seed file %s: network security group %d: id %q is not a network security group id", path, i, head.ID)
		}
		if !strings.EqualFold(q.sub, s.subscriptionID) {
			return fmt.Errorf("seed file %s: network security group %s is not in subscription %s", path, head.ID, s.subscriptionID)
		}
		key := nsgKey(q.rg, q.nsg)
		if s.nsgs[key] != nil {
			return fmt.Errorf("seed file %s: network security group %s appears twice", path, head.ID)
		}
		st, aerr := s.newNSGState(q.rg, q.nsg, raw, nil)
		if aerr != nil {
			return fmt.Errorf("seed file %s: network security group %s: %w", path, head.ID, aerr)
		}
		s.nsgs[key] = &nsgEntry{state: st.withProvisioningState(statusSucceeded)}
		s.ensureGroup(st.rg, st.location)
	}
	return nil
}
