package examples

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// workflowFiles is every GitHub Actions workflow in the repository: the
// project's own and the examples'.
func workflowFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, glob := range []string{"../../.github/workflows/*.yml", root + "/gitops/.github/workflows/*.yml", root + "/daemon/github-actions/*.yml"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 7 {
		t.Fatalf("found only %d workflow files: %q", len(files), files)
	}
	return files
}

var (
	usesLine = regexp.MustCompile(`^\s*(?:-\s+)?uses:\s*(\S+)(.*)$`)
	pinned   = regexp.MustCompile(`^[\w.-]+/[\w./-]+@[0-9a-f]{40}$`)
	version  = regexp.MustCompile(`^\s+# v\d+\.\d+\.\d+$`)
)

// TestWorkflowsPinActionsBySHA: every `uses:` names a full commit SHA, with
// the release it is in as a `# vX.Y.Z` comment for Dependabot and readers.
// A tag can be moved to other code; a commit cannot.
func TestWorkflowsPinActionsBySHA(t *testing.T) {
	n := 0
	for _, f := range workflowFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			m := usesLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			n++
			if strings.HasPrefix(m[1], "./") {
				continue // a local action: part of the repository
			}
			if !pinned.MatchString(m[1]) || !version.MatchString(m[2]) {
				t.Errorf("%s:%d: %q is not owner/repo@<40-hex commit SHA> # vX.Y.Z", f, i+1, strings.TrimSpace(line))
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d uses: lines found", n)
	}
}

// TestDependabot: the project keeps its Go modules and its actions up to
// date, and the GitOps example its actions and provider.
func TestDependabot(t *testing.T) {
	for file, want := range map[string][]string{
		"../../.github/dependabot.yml":          {"package-ecosystem: gomod", "package-ecosystem: github-actions"},
		root + "/gitops/.github/dependabot.yml": {"package-ecosystem: github-actions", "package-ecosystem: terraform"},
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: no %q", file, w)
			}
		}
	}
}
