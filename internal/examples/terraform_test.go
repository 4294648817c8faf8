package examples

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

const root = "../../examples"

// terraformDirs is every folder under examples/ that holds .tf files.
func terraformDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".terraform" {
			t.Errorf("%s is in the repository: remove it", path)
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".tf") {
			dir, _ := filepath.Rel(root, filepath.Dir(path))
			if !slices.Contains(dirs, dir) {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 10 {
		t.Fatalf("found only %d folders with .tf files under %s: %q", len(dirs), root, dirs)
	}
	return dirs
}

func terraformBinary(t *testing.T) string {
	t.Helper()
	p, err := testproc.TerraformPath()
	if err != nil {
		t.Skip(err)
	}
	return p
}

func TestExamplesFormatted(t *testing.T) {
	terraform := terraformBinary(t)
	cmd := exec.Command(terraform, "fmt", "-check", "-recursive", "-diff", root)
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "TF_CLI_CONFIG_FILE="+os.DevNull)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check -recursive examples: %v\n%s", err, out)
	}
}

// TestExamplesValidate runs `terraform init -backend=false` and `terraform
// validate` in a copy of each example folder, alone, as a user who copies
// that folder would. The provider is the one built from this tree, installed
// from a filesystem mirror that holds nothing else; with no other
// installation method terraform cannot reach the network, so an example that
// needs another provider fails here, naming it.
func TestExamplesValidate(t *testing.T) {
	if os.Getenv("JIT_EXAMPLES") == "" {
		t.Skip("set JIT_EXAMPLES=1 (make examples) to build the provider and run terraform validate on every example folder")
	}
	terraform := terraformBinary(t)
	work := t.TempDir()
	const version = "0.1.0" // examples/gitops asks for "~> 0.1"
	mirror := filepath.Join(work, "mirror")
	plugin := filepath.Join(mirror, "registry.terraform.io/jitaccess/jit", version, runtime.GOOS+"_"+runtime.GOARCH,
		"terraform-provider-jit_v"+version)
	if out, err := exec.Command("go", "build", "-o", plugin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("go build the provider: %v\n%s", err, out)
	}
	cliConfig := testproc.FilesystemMirror(mirror)
	for _, dir := range terraformDirs(t) {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			t.Parallel()
			copyDir := filepath.Join(work, "examples", dir)
			// Only the folder's own files: a sub-folder is another example.
			entries, err := os.ReadDir(filepath.Join(root, dir))
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]string{}
			for _, e := range entries {
				if e.Type().IsRegular() {
					b, err := os.ReadFile(filepath.Join(root, dir, e.Name()))
					if err != nil {
						t.Fatal(err)
					}
					files[e.Name()] = string(b)
				}
			}
			tf := testproc.NewTerraform(t, terraform, copyDir, cliConfig, files)
			for _, args := range [][]string{{"init", "-backend=false", "-input=false", "-no-color"}, {"validate", "-no-color"}} {
				if out, err := tf.Run(args...); err != nil {
					t.Fatalf("examples/%s: terraform %s: %v\n%s", filepath.ToSlash(dir), args[0], err, out)
				}
			}
		})
	}
}
