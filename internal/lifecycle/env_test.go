package lifecycle

import (
	"os"
	"sync"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// suiteEnv is the shared binaries, terraform and local Azure process of
// the suite (testproc.Suite).
type suiteEnv = testproc.Suite

var (
	builds    = testproc.Builds{Pattern: "jit-lifecycle-"}
	envOnce   sync.Once
	shared    *suiteEnv
	sharedErr error
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
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
	envOnce.Do(func() { shared, sharedErr = testproc.StartSuite(&builds, tf) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}
