package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"completion", shell}, envOf(nil), &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("jitd completion %s: %v", shell, err)
	}
	return stdout.String()
}

// Every completion script names every command and every flag of every
// command, taken from the definitions jitd parses with.
func TestCompletionNamesEveryCommandAndFlag(t *testing.T) {
	for _, shell := range completionShells {
		script := completionScript(t, shell)
		for _, c := range commands {
			if c.name != "" && !strings.Contains(script, c.name) {
				t.Errorf("%s completion lacks the command %q", shell, c.name)
			}
			for _, f := range commandFlags(c) {
				want := "--" + f.name
				if shell == "fish" {
					want = "-l " + f.name
				}
				if !strings.Contains(script, want) {
					t.Errorf("%s completion lacks %s's flag %s", shell, displayName(c.name), want)
				}
			}
		}
	}
}

func displayName(name string) string {
	if name == "" {
		return "jitd"
	}
	return "jitd " + name
}

// shellCheck runs the shell's own syntax check on the script, when the
// shell is installed.
func shellCheck(t *testing.T, shell, script string, args ...string) {
	t.Helper()
	path, err := exec.LookPath(shell)
	if err != nil {
		t.Skipf("%s is not installed", shell)
	}
	file := filepath.Join(t.TempDir(), "jitd."+shell)
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(path, append(args, file)...).CombinedOutput(); err != nil {
		t.Errorf("%s %v rejects the script: %v\n%s", shell, args, err, out)
	}
}

func TestCompletionScriptsParse(t *testing.T) {
	t.Run("bash", func(t *testing.T) { shellCheck(t, "bash", completionScript(t, "bash"), "-n") })
	t.Run("zsh", func(t *testing.T) { shellCheck(t, "zsh", completionScript(t, "zsh"), "-n") })
	t.Run("fish", func(t *testing.T) { shellCheck(t, "fish", completionScript(t, "fish"), "--no-execute") })
}

// TestBashCompletion runs the bash script's function as bash would on a
// Tab, for a few command lines.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	file := filepath.Join(t.TempDir(), "jitd.bash")
	if err := os.WriteFile(file, []byte(completionScript(t, "bash")), 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		script := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _jitd; printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", append([]string{"-c", script, "bash", file}, words...)...).Output()
		if err != nil {
			t.Fatalf("completing %q: %v", words, err)
		}
		return strings.Fields(string(out))
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"jitd", "s"}, []string{"scan", "status"}},
		{[]string{"jitd", "scan", "--o"}, []string{"--output"}},
		{[]string{"jitd", "scan", "--output", ""}, []string{"table", "json"}},
		{[]string{"jitd", "--resource-group", "rg", "st"}, []string{"status"}},
		{[]string{"jitd", "completion", ""}, []string{"bash", "zsh", "fish"}},
		{[]string{"jitd", "request", "--source", ""}, []string{"auto"}},
		{[]string{"jitd", "--once", "--log-level", "d"}, []string{"debug"}},
		{[]string{"jitd", "status", "--policy", ""}, nil}, // a value: file names, not words
	} {
		got := complete(tc.words...)
		if !slices.Equal(got, tc.want) {
			t.Errorf("completing %q: %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestFishCompletion asks fish itself what it completes, when installed.
func TestFishCompletion(t *testing.T) {
	fish, err := exec.LookPath("fish")
	if err != nil {
		t.Skip("fish is not installed")
	}
	file := filepath.Join(t.TempDir(), "jitd.fish")
	if err := os.WriteFile(file, []byte(completionScript(t, "fish")), 0o600); err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string][]string{
		"jitd sc":                   {"scan"},
		"jitd scan --out":           {"--output"},
		"jitd scan --output ":       {"json", "table"},
		"jitd completion ":          {"bash", "fish", "zsh"},
		"jitd request --my-ip":      {"--my-ip-url"},
		"jitd --resource-group rg ": sortedCommandNames(),
	} {
		out, err := exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, file, line).Output()
		if err != nil {
			t.Fatalf("fish completing %q: %v", line, err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if w, _, _ := strings.Cut(l, "\t"); w != "" {
				got = append(got, w)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("fish completing %q: %q, want %q", line, got, want)
		}
	}
}

func sortedCommandNames() []string {
	names := commandNames()
	slices.Sort(names)
	return names
}
