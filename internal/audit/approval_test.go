package audit

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestApprovalFromEnvReadsWhatThePipelineSets(t *testing.T) {
	sha := strings.Repeat("ab12", 10)
	a, err := ApprovalFromEnv(envOf(map[string]string{
		EnvApprovedBy: " alice, bob-smith ,,carol@example.com,renovate[bot],Alice,",
		EnvChangeRef:  "acme/jit-requests#42",
		EnvCommitSHA:  strings.ToUpper(sha),
		EnvChangeURL:  "https://github.com/acme/jit-requests/pull/42",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Approval{ApprovedBy: []string{"alice", "bob-smith", "carol@example.com", "renovate[bot]"},
		ChangeRef: "acme/jit-requests#42", CommitSHA: sha, ChangeURL: "https://github.com/acme/jit-requests/pull/42"}
	if !slices.Equal(a.ApprovedBy, want.ApprovedBy) || a.ChangeRef != want.ChangeRef || a.CommitSHA != want.CommitSHA ||
		a.ChangeURL != want.ChangeURL {
		t.Errorf("ApprovalFromEnv = %+v, want %+v", a, want)
	}
	if a, err := ApprovalFromEnv(envOf(nil)); err != nil || !a.IsZero() {
		t.Errorf("unset variables: %+v, %v; want nothing and no error", a, err)
	}
	if a, err := ApprovalFromEnv(envOf(map[string]string{EnvChangeRef: "group/project!7"})); err != nil || a.ChangeRef != "group/project!7" {
		t.Errorf("a GitLab merge request reference: %+v, %v", a, err)
	}
}

// Untrusted text in the approval variables is refused, naming the variable
// and never repeating the value (it may carry markup, a line break that
// forges a log line, or a credential).
func TestApprovalFromEnvFailsClosedOnMalformedValues(t *testing.T) {
	tests := []struct{ name, value string }{
		{EnvApprovedBy, "alice\n{\"action\":\"close\"}"},
		{EnvApprovedBy, "alice,<!channel>"},
		{EnvApprovedBy, "[boss](https://evil.example)"},
		{EnvApprovedBy, "-rf"},
		{EnvApprovedBy, "al ice"},
		{EnvApprovedBy, strings.Repeat("a", 101)},
		{EnvApprovedBy, manyLogins(51)},
		{EnvApprovedBy, "élodie"},
		{EnvChangeRef, "acme/repo#1; rm -rf /"},
		{EnvChangeRef, "#1"},
		{EnvChangeRef, strings.Repeat("a", 201)},
		{EnvCommitSHA, "abc123"},
		{EnvCommitSHA, strings.Repeat("g", 40)},
		{EnvChangeURL, "javascript:alert(1)"},
		{EnvChangeURL, "https://user:hunter2@github.com/acme/repo/pull/1"},
		{EnvChangeURL, "https://github.com/acme/repo/pull/1\nforged"},
		{EnvChangeURL, "https://github.com/a b"},
		{EnvChangeURL, "/acme/repo/pull/1"},
		{EnvChangeURL, "https://" + strings.Repeat("a", 2048)},
	}
	for _, tt := range tests {
		_, err := ApprovalFromEnv(envOf(map[string]string{tt.name: tt.value}))
		if err == nil {
			t.Errorf("%s=%q accepted", tt.name, tt.value)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.name+": ") {
			t.Errorf("%s=%q: error %q does not name the variable first", tt.name, tt.value, err)
		}
		for _, secret := range []string{"hunter2", "<!channel>", "rm -rf", "\n", "evil"} {
			if strings.Contains(tt.value, secret) && strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error repeats the value: %q", tt.name, err)
			}
		}
	}
}

func TestTextNamesTheApprovers(t *testing.T) {
	e := Event{Action: ActionOpen, Result: ResultSuccess, Actor: "terraform-provider-jit", GrantID: "a1b2", Policy: "web",
		Requester: "dave", Approval: Approval{ApprovedBy: []string{"alice", "bob"}, ChangeRef: "acme/jit#42"}}
	want := "terraform-provider-jit opened grant a1b2 of policy web for dave, approved by alice, bob in acme/jit#42"
	if got := Text(e); got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
}

func manyLogins(n int) string {
	logins := make([]string, n)
	for i := range logins {
		logins[i] = "user" + strconv.Itoa(i)
	}
	return strings.Join(logins, ",")
}
