package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// suiteEnv is what every run of the suite shares in one test process: the
// binaries built from the working tree, terraform, and one local Azure
// process (Go reads SSL_CERT_FILE once per process, so one CA, so one
// server). Each run works in a resource group of its own.
type suiteEnv struct {
	providerDir string
	jitd        string
	terraform   string
	sim         *testproc.Azuresim
	arm         *testproc.ARMClients
}

var (
	builds    = testproc.Builds{Pattern: "jit-lifecycle-"}
	envOnce   sync.Once
	shared    *suiteEnv
	sharedErr error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.sim.Stop()
	}
	builds.Remove()
	os.Exit(code)
}

// startEnv builds the binaries and starts the local Azure, once.
func startEnv(t *testing.T) *suiteEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("lifecycle suite with real processes; skipped with -short")
	}
	tf, err := testproc.TerraformPath()
	if err != nil {
		t.Skip(err.Error())
	}
	envOnce.Do(func() { shared, sharedErr = setUp(tf) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func setUp(tf string) (*suiteEnv, error) {
	const module = "github.com/jitaccess/terraform-provider-jit"
	e := &suiteEnv{terraform: tf}
	provider, err := builds.Build(filepath.Join("provider", "terraform-provider-jit"), module, "-trimpath")
	if err != nil {
		return e, err
	}
	e.providerDir = filepath.Dir(provider)
	if e.jitd, err = builds.Build("jitd", module+"/internal/cmd/jitd", "-trimpath"); err != nil {
		return e, err
	}
	sim, err := builds.Build("azuresim", module+"/internal/cmd/azuresim", "-trimpath")
	if err != nil {
		return e, err
	}
	dir, err := builds.Dir()
	if err != nil {
		return e, err
	}
	if e.sim, err = testproc.StartAzuresim(sim, dir, 60*time.Second); err != nil {
		return e, err
	}
	e.arm, err = testproc.NewARMClients(context.Background(), e.sim)
	return e, err
}
