package testproc

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TerraformPath is the terraform binary the acceptance tests use:
// TF_ACC_TERRAFORM_PATH, else terraform on PATH.
func TerraformPath() (string, error) {
	if p := os.Getenv("TF_ACC_TERRAFORM_PATH"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("terraform")
	if err != nil {
		return "", errors.New("terraform not found: put it on PATH or set TF_ACC_TERRAFORM_PATH")
	}
	return p, nil
}

// DevOverrides is a terraform CLI configuration that takes the provider
// from providerDir as built, with no init and nothing downloaded.
func DevOverrides(providerDir string) string {
	return `provider_installation {
  dev_overrides { "jitaccess/jit" = "` + providerDir + `" }
  direct {}
}
`
}

// FilesystemMirror is a terraform CLI configuration that installs the
// provider from a filesystem mirror at dir, so that a plain terraform init
// works offline.
func FilesystemMirror(dir string) string {
	return `provider_installation {
  filesystem_mirror {
    path    = "` + dir + `"
    include = ["registry.terraform.io/jitaccess/jit"]
  }
}
`
}

// Terraform runs terraform in one working directory with a clean
// environment: only what a CI job would set, never the developer's own
// credentials or CLI configuration.
type Terraform struct {
	Bin string
	Dir string
	Env []string
}

// NewTerraform writes cliConfig and files (name → content) to dir and
// returns a runner whose environment is the clean base plus env.
func NewTerraform(t testing.TB, bin, dir, cliConfig string, files map[string]string, env ...string) *Terraform {
	t.Helper()
	rc := filepath.Join(dir, "terraformrc")
	WriteFile(t, rc, cliConfig)
	for name, content := range files {
		WriteFile(t, filepath.Join(dir, name), content)
	}
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TF_CLI_CONFIG_FILE=" + rc,
		"CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1"}
	return &Terraform{Bin: bin, Dir: dir, Env: append(base, env...)}
}

// Command is terraform with args (after -chdir) and extraEnv, its
// combined output going to the returned buffer.
func (tf *Terraform) Command(extraEnv []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(tf.Bin, append([]string{"-chdir=" + tf.Dir}, args...)...)
	cmd.Env = append(slices.Clone(tf.Env), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd, &out
}

// Run runs terraform to the end and returns its combined output.
func (tf *Terraform) Run(args ...string) (string, error) {
	cmd, out := tf.Command(nil, args...)
	err := cmd.Run()
	return out.String(), err
}

// ExitCode is a command's exit code from its error: 0 for nil, -1 if it
// did not run.
func ExitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		return -1
	}
}

// WriteFile writes content to path, creating its directory.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
