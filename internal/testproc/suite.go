package testproc

import (
	"context"
	"path/filepath"
	"time"
)

// Suite is what the end-to-end suites with real processes share in one
// test process: the provider, jitd and local Azure binaries built from the
// working tree, terraform, and one local Azure process (Go reads
// SSL_CERT_FILE once per process, so one CA, so one server) with clients
// for it. Each test works in a resource group of its own.
type Suite struct {
	// ProviderDir holds the provider binary, for DevOverrides.
	ProviderDir string
	Jitd        string
	Terraform   string
	Sim         *Azuresim
	ARM         *ARMClients
}

// module is this project's Go module path.
const module = "github.com/jitaccess/terraform-provider-jit"

// StartSuite builds the binaries with b and starts the local Azure. Stop it
// with Close (TestMain), and remove the builds with b.Remove.
func StartSuite(b *Builds, terraform string) (*Suite, error) {
	s := &Suite{Terraform: terraform}
	provider, err := b.Build(filepath.Join("provider", "terraform-provider-jit"), module, "-trimpath")
	if err != nil {
		return s, err
	}
	s.ProviderDir = filepath.Dir(provider)
	if s.Jitd, err = b.Build("jitd", module+"/internal/cmd/jitd", "-trimpath"); err != nil {
		return s, err
	}
	sim, err := b.Build("azuresim", module+"/internal/cmd/azuresim", "-trimpath")
	if err != nil {
		return s, err
	}
	dir, err := b.Dir()
	if err != nil {
		return s, err
	}
	if s.Sim, err = StartAzuresim(sim, dir, 60*time.Second); err != nil {
		return s, err
	}
	s.ARM, err = NewARMClients(context.Background(), s.Sim)
	return s, err
}

// Close stops the local Azure, if it was started.
func (s *Suite) Close() {
	if s != nil && s.Sim != nil {
		s.Sim.Stop()
	}
}
